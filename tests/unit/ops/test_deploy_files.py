"""Deployment files: they parse, and every command they run is a real `quasar` command.

No Docker engine or Bazel runs here, so this checks what can be checked without one: compose and
render files parse; each `quasar ...` they (and the Dockerfiles and the Bazel entrypoint) run is a
Typer command that accepts the flags given; pip lines pin torch; nothing deletes data at start; the
Bazel helper scripts and the four START scripts run and say what is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quasar.cli import app

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = ["Dockerfile", "miner/Dockerfile.inference", "miner/Dockerfile.render", "Dockerfile.validator"]
CUDA_DOCKERFILES = {"miner/Dockerfile.inference", "Dockerfile.validator"}
DESTRUCTIVE = re.compile(r"\brm\s+-|\bdrop\b|\bdowngrade\b|\btruncate\b|\breset\b|dropdb", re.I)


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _render() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def _dockerfile_instructions(path: str) -> list[tuple[str, str]]:
    text = (ROOT / path).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _as_shell(command: str | list[str]) -> str:
    """A compose/Docker command (exec-form list or string) as the shell line it runs (`sh -c` unwrapped)."""
    if isinstance(command, str) and command.startswith("["):
        command = yaml.safe_load(command)
    if isinstance(command, str):
        words = shlex.split(command)
        command = words if words[:2] == ["sh", "-c"] else command
    if isinstance(command, list):
        return command[2] if command[:2] == ["sh", "-c"] else shlex.join(command)
    return command


def _quasar_invocations(shell: str) -> list[list[str]]:
    """Each `quasar ...` in a (possibly `sh -c`) command line, split into argv without `quasar`."""
    found = []
    for part in re.split(r"&&|;|\|\|", shell):
        match = re.search(r"(?:^|\s|exec\s)quasar\s+(.*)$", part.strip())
        if match:
            argv = shlex.split(match.group(1).replace("$$", "$"))
            found.append([a for a in argv if a])
    return found


def _all_commands() -> dict[str, str]:
    commands: dict[str, str] = {}
    for name, service in _compose()["services"].items():
        if "command" in service:
            commands[f"compose:{name}"] = _as_shell(service["command"])
    for service in _render()["services"]:
        commands[f"render:{service['name']}"] = _as_shell(service["dockerCommand"])
    for path in DOCKERFILES:
        for keyword, rest in _dockerfile_instructions(path):
            if keyword in ("CMD", "ENTRYPOINT"):
                commands[f"{path}:{keyword}"] = _as_shell(rest)
    entry = (ROOT / "docker-build/entrypoint.sh").read_text()
    commands["docker-build/entrypoint.sh"] = next(line for line in entry.splitlines() if "quasar " in line)
    return commands


def _check_cli(argv: list[str]) -> None:
    """The subcommand exists and every --option given is one it accepts (as `quasar ... --help` shows)."""
    words = [a for a in argv if not a.startswith("-")]
    options = [a.split("=")[0] for a in argv if a.startswith("--")]
    # Subcommand words come first; stop at the first option (the rest are option values).
    sub: list[str] = []
    for arg in argv:
        if arg.startswith("-"):
            break
        sub.append(arg)
    result = CliRunner().invoke(app, [*sub, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, f"`quasar {' '.join(sub)} --help` failed: {result.output}"
    for option in options:
        assert option in result.output, f"`quasar {' '.join(sub)}` has no option {option}"
    assert words, argv


def test_compose_and_render_parse_and_run_only_real_commands() -> None:
    commands = _all_commands()
    seen = set()
    for where, shell in commands.items():
        invocations = _quasar_invocations(shell)
        assert invocations, f"{where} runs no quasar command: {shell}"
        assert not DESTRUCTIVE.search(shell), f"{where} would delete data at start: {shell}"
        for argv in invocations:
            _check_cli(argv)
            seen.add(argv[0])
    assert {"api", "db", "inference", "validator"} <= seen


def test_api_starts_with_forward_migrations_everywhere() -> None:
    for where, shell in _all_commands().items():
        if any(argv[0] == "api" for argv in _quasar_invocations(shell)):
            assert re.search(r"quasar db upgrade\s*&&.*quasar api", shell), where


def test_compose_services_health_volumes_and_sandbox_allowances() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "api", "inference", "validator"}
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["inference"]["healthcheck"]["test"])
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["validator"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert set(services["validator"]["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    assert services["inference"]["ports"] == ["${MINER_INFERENCE_PORT:-8001}:8000"]
    assert services["api"]["ports"] == ["${PORT:-8000}:8000"]
    named = set(compose["volumes"])
    used = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith(("$", "/", "."))
    }
    assert used == named and len(named) == 4
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}` (`$$` is a `$`)."""

    def one(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        got = variables.get(name)
        if op == ":-":
            return got or default
        if op == "-":
            return default if got is None else got
        return got or ""

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", one, value.replace("$$", "\0")).replace("\0", "$")


def _image_env(dockerfile: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile_instructions(dockerfile):
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest) if "=" in word)
    return env


@pytest.mark.parametrize("dotenv", ["example", "test"])
def test_compose_production_does_not_take_the_dev_profile_from_the_example_env(dotenv: str) -> None:
    """`cp .env.example .env && docker compose up`: every quasar service runs on finney, not embedded.

    Compose reads `.env` twice: for `${...}` in this file and, through `env_file`, into each container;
    `environment:` wins over `env_file`, which wins over the image's ENV. The settings' own default
    (embedded) applies when none of them sets SUBTENSOR_NETWORK.
    """
    from dotenv import dotenv_values

    from quasar.config import Settings

    values = {k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None}
    if dotenv == "test":  # an operator who names another chain in .env gets it
        values["SUBTENSOR_NETWORK"] = "test"
    default = Settings.model_fields["subtensor_network"].default
    services = _compose()["services"]
    quasar_services = [name for name, service in services.items() if "build" in service]
    assert set(quasar_services) == {"api", "inference", "validator"}
    for name in quasar_services:
        service = services[name]
        assert [f["path"] for f in service["env_file"]] == [".env"], name
        environment = {k: _interpolate(str(v), values) for k, v in (service.get("environment") or {}).items()}
        container = {**_image_env(service["build"]["dockerfile"]), **values, **environment}
        network = container.get("SUBTENSOR_NETWORK", default)
        assert network == ("test" if dotenv == "test" else "finney"), f"{name} runs on {network!r}"


def test_render_blueprint_api_and_managed_postgres() -> None:
    render = _render()
    (db,) = render["databases"]
    (web,) = render["services"]
    assert web["runtime"] == "docker" and (ROOT / web["dockerfilePath"]).is_file()
    assert web["healthCheckPath"] == "/ready"
    url = next(v for v in web["envVars"] if v["key"] == "DATABASE_URL")
    assert url["fromDatabase"] == {"name": db["name"], "property": "connectionString"}
    assert '"$PORT"' in web["dockerCommand"]


def _project_installs(runs: list[str]) -> list[str]:
    """The extras each `pip install .[...]` line installs the project with ("" for none)."""
    found = []
    for run in runs:
        for match in re.finditer(
            r"pip install (?:--\S+ )*\"?(?:\.|/opt/quasar/src)(?:\[([\w,]+)\])?\"?", run
        ):
            found.append(match.group(1) or "")
    return found


def test_the_api_image_installs_the_api_extra_and_no_torch() -> None:
    """The API imports neither torch nor transformers (tests/unit/ops/test_api_without_torch.py)."""
    instructions = _dockerfile_instructions("Dockerfile")
    runs = [rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest]
    assert not [r for r in runs if re.search(r"\b(torch|transformers|triton)\b", r)], runs
    assert _project_installs(runs) == ["api"], runs
    assert _image_env("Dockerfile")["SUBTENSOR_NETWORK"] == "finney"
    for keyword, rest in instructions:
        if keyword == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile: COPY {source} does not exist"
    assert ("USER", "quasar") in instructions


def test_the_neuron_images_install_the_extra_that_brings_torch() -> None:
    extras = {
        path: _project_installs([r for k, r in _dockerfile_instructions(path) if k == "RUN"])
        for path in DOCKERFILES
        if path != "Dockerfile"
    }
    extras["docker-build/entrypoint.sh"] = _project_installs(
        [(ROOT / "docker-build/entrypoint.sh").read_text()]
    )
    for where, found in extras.items():
        assert found in (["neuron"], ["gpu"]), (where, found)  # gpu includes neuron
    import tomllib

    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "quasar-subnet[neuron]" in optional["gpu"]
    assert any(d.startswith("torch") for d in optional["neuron"])


@pytest.mark.parametrize("path", [p for p in DOCKERFILES if p != "Dockerfile"])
def test_dockerfiles_pin_torch_and_copy_what_exists(path: str) -> None:
    instructions = _dockerfile_instructions(path)
    runs = [rest for keyword, rest in instructions if keyword == "RUN" and "pip install" in rest]
    torch_lines = [r for r in runs if re.search(r"\btorch\b", r)]
    assert len(torch_lines) == 1, f"{path}: exactly one pip line installs torch"
    assert re.search(r"\btorch==\d+\.\d+\.\d+", torch_lines[0]), f"{path}: torch must be pinned"
    index = "cu130" if path in CUDA_DOCKERFILES else "whl/cpu"
    assert index in torch_lines[0], f"{path}: expected the {index} index"
    assert runs.index(torch_lines[0]) < next(
        i for i, r in enumerate(runs) if re.search(r"pip install \"?\.", r)
    )
    if path not in CUDA_DOCKERFILES:
        assert "torch==2.13.0" in torch_lines[0]  # the Makefile's CPU pin
    for keyword, rest in instructions:
        if keyword == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"{path}: COPY {source} does not exist"
    assert ("USER", "quasar") in instructions, f"{path}: runs as an unprivileged user"


def test_makefile_cpu_pin_matches_the_images() -> None:
    assert "TORCH_PIN ?= torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in (ROOT / "docker-build/entrypoint.sh").read_text()


# --- docker-build (Bazel rules_oci) -------------------------------------------------------------
def _run(argv: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    base = {k: v for k, v in os.environ.items() if k != "DOCKER_USERNAME"}
    return subprocess.run(
        argv, capture_output=True, text=True, env={**base, **(env or {})}, timeout=60, **kwargs
    )


def test_bazel_build_defines_gpu_and_cpu_images_and_pushes() -> None:
    build = (ROOT / "docker-build/BUILD.bazel").read_text()
    module = (ROOT / "docker-build/MODULE.bazel").read_text()
    assert 'bazel_dep(name = "rules_oci"' in module and "oci.pull(" in module
    for flavor in ("gpu", "cpu"):
        assert f'name = "miner_image_{flavor}"' in build and f'name = "push_miner_image_{flavor}"' in build
        assert f'"index.docker.io/%s/quasar-miner-{flavor}" % DOCKER_USERNAME' in build
    assert 'load(":config.bzl", "DOCKER_USERNAME")' in build


def test_load_config_from_env(tmp_path: Path) -> None:
    script = str(ROOT / "docker-build/load_config_from_env.sh")
    out = tmp_path / "config.bzl"
    env = {"ENV_FILE": str(tmp_path / ".env"), "CONFIG_OUT": str(out)}
    missing = _run([script], env)
    assert missing.returncode == 1 and "DOCKER_USERNAME is not set" in missing.stderr and not out.exists()
    (tmp_path / ".env").write_text("NETUID=24\nDOCKER_USERNAME='quasar-dev'  # my hub account\n")
    done = _run([script], env)
    assert done.returncode == 0, done.stderr
    assert 'DOCKER_USERNAME = "quasar-dev"' in out.read_text()
    bad = _run([script], {**env, "DOCKER_USERNAME": 'Evil"; fail()'})
    assert bad.returncode == 1 and "not a valid Docker Hub namespace" in bad.stderr


def test_push_miner_help_and_dry_run(tmp_path: Path) -> None:
    script = str(ROOT / "docker-build/push_miner.sh")
    assert "--gpu" in _run([script, "--help"]).stdout
    env = {"DOCKER_USERNAME": "someone", "CONFIG_OUT": str(tmp_path / "config.bzl")}
    dry = _run([script, "--all", "--dry-run"], env, stdin=subprocess.DEVNULL)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split("\n")[:2] == [
        "bazel run //:push_miner_image_gpu",
        "bazel run //:push_miner_image_cpu",
    ]
    unset = _run(
        [script, "--gpu", "--dry-run"], {"ENV_FILE": str(tmp_path / "none")}, stdin=subprocess.DEVNULL
    )
    assert unset.returncode == 1 and "DOCKER_USERNAME is not set" in unset.stderr
    no_choice = _run([script], stdin=subprocess.DEVNULL)
    assert no_choice.returncode == 2 and "--gpu, --cpu or --all" in no_choice.stderr


# --- START scripts ----------------------------------------------------------------------------------
START = {
    "START_SERVER.sh": ["api", "--host", "0.0.0.0", "--port", "8000"],
    "START_MINER.sh": ["miner"],
    "START_VALIDATOR.sh": ["validator"],
    "START_MINER_INFERENCE.sh": ["inference", "--host", "0.0.0.0", "--port", "8001"],
}


@pytest.fixture
def fake_quasar(tmp_path: Path) -> Path:
    """A stand-in `quasar` that records its argv, so a START script's exact command can be checked.

    It loads no `.env` (`quasar env` prints nothing), so a developer's own `.env` changes nothing here;
    tests/unit/ops/test_start_env.py runs the real loading step.
    """
    fake = tmp_path / "quasar"
    fake.write_text('#!/bin/sh\n[ "$1" = env ] && exit 0\necho "quasar $*" >> "$FAKE_LOG"\n')
    fake.chmod(0o755)
    return fake


def _start_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, "FAKE_LOG": str(tmp_path / "log"), **extra}


@pytest.mark.parametrize("script", sorted(START))
def test_start_script_help_runs_one_role_and_says_what_is_missing(
    script: str, tmp_path: Path, fake_quasar: Path
) -> None:
    path = str(ROOT / script)
    helped = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "usage" in helped.stdout.lower()
    absent = subprocess.run(
        [path],
        capture_output=True,
        text=True,
        timeout=30,
        env=_start_env(tmp_path, QUASAR=str(tmp_path / "nope")),
    )
    assert absent.returncode != 0 and "not found" in absent.stderr and "make" in absent.stderr
    ran = subprocess.run(
        [path], capture_output=True, text=True, timeout=30, env=_start_env(tmp_path, QUASAR=str(fake_quasar))
    )
    assert ran.returncode == 0, ran.stderr
    lines = (tmp_path / "log").read_text().splitlines()
    expected = START[script]
    role = [line for line in lines if line.split()[1] == expected[0]]
    assert len(role) == 1 and role[0].split()[1:][: len(expected)] == expected, lines
    _check_cli(role[0].split()[1:])
    if script == "START_SERVER.sh":
        assert lines[0] == "quasar db upgrade"


def test_start_miner_on_a_real_chain_needs_github(tmp_path: Path, fake_quasar: Path) -> None:
    env = _start_env(tmp_path, QUASAR=str(fake_quasar), SUBTENSOR_NETWORK="finney")
    refused = subprocess.run(
        [str(ROOT / "START_MINER.sh")], capture_output=True, text=True, timeout=30, env=env
    )
    assert refused.returncode == 2 and "GITHUB_TOKEN" in refused.stderr
    assert not (tmp_path / "log").exists()
