"""The miner inference server, for real: uvicorn on loopback ports serving the tiny model, checked by
the validator's verifier over HTTP.

Honest and dishonest servers are the same server code serving another model (another seed, 1 %
weight noise), or small adversary apps in front of an honest server that shift logits positions or
pad answers with made-up tokens. Also: input limits (422 with a code), the bounded queue (503 busy),
and on a real chain: signatures, the validator-permit check and the per-caller rate limit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from bittensor import http_auth
from bittensor.sp_core import Keypair
from fastapi import FastAPI, Request

from quasar.chain.devchain import DevChain
from quasar.config import Settings
from quasar.inference.model import LoadedModel, load_model
from quasar.inference.server import create_app
from quasar.models.tiny import make_tiny_model
from quasar.verification.calibrate import add_weight_noise, clone_model
from quasar.verification.client import verify_server
from quasar.verification.verifier import ChallengeSpec, Verifier

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.timeout(300)


# --- servers on loopback ports ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run ``app`` in uvicorn on a free 127.0.0.1 port (in a thread); yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def dev_settings(tmp: Path, **overrides: Any) -> Settings:
    return Settings(_env_file=None, quasar_home=tmp / "home", subtensor_network="embedded", **overrides)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {"seed0": make_tiny_model(root / "seed0", 0), "seed1": make_tiny_model(root / "seed1", 1)}


@pytest.fixture(scope="session")
def honest_model(models: dict[str, Path]) -> LoadedModel:
    return load_model(str(models["seed0"]), "cpu", "float32")


@pytest.fixture(scope="session")
def verifier(models: dict[str, Path]) -> Verifier:
    reference = load_model(str(models["seed0"]), "cpu", "float32")
    return Verifier(reference, spec=ChallengeSpec(prompt_tokens=24, max_new_tokens=24, checked_positions=6))


@pytest.fixture(scope="module")
def honest_url(tmp_path_factory: pytest.TempPathFactory, honest_model: LoadedModel) -> Iterator[str]:
    settings = dev_settings(tmp_path_factory.mktemp("honest"))
    with serving(create_app(settings, honest_model)) as url:
        yield url


def check(url: str, verifier: Verifier, seed: str = "integration-1") -> Any:
    result, _ = verify_server(url, verifier, dev_mode=True, timeout=60, seed=seed)
    return result


# --- honest and dishonest servers --------------------------------------------------------------------
def test_health_and_model_info(honest_url: str, honest_model: LoadedModel) -> None:
    assert httpx.get(f"{honest_url}/health").json()["status"] == "ok"
    info = httpx.get(f"{honest_url}/model_info").json()
    assert info["weights_sha256"] == honest_model.weights_sha256
    assert (info["dtype"], info["device"], info["vocab_size"]) == ("float32", "cpu", honest_model.vocab_size)
    assert info["max_context"] == honest_model.max_context and info["auth_required"] is False


def test_prompt_text_is_tokenized_and_answered(honest_url: str) -> None:
    reply = httpx.post(
        f"{honest_url}/inference",
        json={"prompt": "The validator draws a seed", "max_new_tokens": 5, "logits_positions": [4]},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert len(body["output_ids"]) <= 5 and isinstance(body["text"], str)
    assert set(body["logits"]) <= {"4"} and body["prefill_ms"] >= 0


@pytest.mark.parametrize("seed", ["integration-1", "integration-2"])
def test_honest_server_passes(honest_url: str, verifier: Verifier, seed: str) -> None:
    result = check(honest_url, verifier, seed)
    assert result.verdict == "pass", result.as_dict()
    assert result.metrics["tokens_per_s"] > 0 and result.metrics["centred_cosine_mean"] > 0.99999


def test_server_of_another_seed_fails(tmp_path: Path, models: dict[str, Path], verifier: Verifier) -> None:
    other = load_model(str(models["seed1"]), "cpu", "float32")
    with serving(create_app(dev_settings(tmp_path), other)) as url:
        result = check(url, verifier)
    assert result.verdict == "fail" and result.reason == "token_mismatch", result.as_dict()


def test_server_with_one_percent_weight_noise_fails(
    tmp_path: Path, honest_model: LoadedModel, verifier: Verifier
) -> None:
    noisy = add_weight_noise(clone_model(honest_model.model, torch.float32), 0.01, seed=7)
    served = LoadedModel(noisy, honest_model.tokenizer, honest_model.name, torch.float32, torch.device("cpu"))
    with serving(create_app(dev_settings(tmp_path), served)) as url:
        result = check(url, verifier)
    assert result.verdict == "fail" and result.reason in {"token_mismatch", "logits_diverge", "kl_too_high"}


def adversary(upstream: str, rewrite: Callable[[dict[str, Any], httpx.Client], dict[str, Any]]) -> FastAPI:
    """A server that answers by asking an honest one and rewriting its answer."""
    app = FastAPI()
    client = httpx.Client(base_url=upstream, timeout=60)

    @app.get("/model_info")
    def model_info() -> Any:
        return client.get("/model_info").json()

    @app.post("/inference")
    async def inference(request: Request) -> Any:
        return rewrite(await request.json(), client)

    return app


def shift_positions(body: dict[str, Any], client: httpx.Client) -> dict[str, Any]:
    wanted = body["logits_positions"]
    asked = sorted({p + 1 for p in wanted if p + 1 < body["max_new_tokens"]} | set(wanted))
    answer = client.post("/inference", json={**body, "logits_positions": asked}).json()
    answer["logits"] = {str(p): answer["logits"].get(str(p + 1), answer["logits"][str(p)]) for p in wanted}
    return answer


def pad_with_made_up_tokens(body: dict[str, Any], client: httpx.Client) -> dict[str, Any]:
    half = body["max_new_tokens"] // 2
    early = [p for p in body["logits_positions"] if p < half]
    answer = client.post(
        "/inference", json={**body, "max_new_tokens": half, "logits_positions": early}
    ).json()
    filler = [(17 * i + 5) % 700 + 2 for i in range(body["max_new_tokens"] - half)]
    answer["output_ids"] += filler
    last = answer["logits"][str(early[-1])] if early else next(iter(answer["logits"].values()), "")
    answer["logits"] = {str(p): answer["logits"].get(str(p), last) for p in body["logits_positions"]}
    return answer


def test_server_returning_shifted_positions_fails(honest_url: str, verifier: Verifier) -> None:
    with serving(adversary(honest_url, shift_positions)) as url:
        result = check(url, verifier)
    assert result.verdict == "fail" and result.reason in {"logits_diverge", "kl_too_high"}, result.as_dict()


def test_server_padding_with_made_up_tokens_fails(honest_url: str, verifier: Verifier) -> None:
    with serving(adversary(honest_url, pad_with_made_up_tokens)) as url:
        result = check(url, verifier)
    assert result.verdict == "fail" and result.reason == "token_mismatch", result.as_dict()


def test_unreachable_server_fails(verifier: Verifier) -> None:
    result = check(f"http://127.0.0.1:{_free_port()}", verifier)
    assert (result.verdict, result.reason) == ("fail", "unreachable")


# --- input limits --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"input_ids": [5, 6], "prompt": "hi", "max_new_tokens": 2}, "prompt_xor_input_ids"),
        ({"max_new_tokens": 2}, "prompt_xor_input_ids"),
        ({"input_ids": [], "max_new_tokens": 2}, "empty_prompt"),
        ({"input_ids": [5] * 65, "max_new_tokens": 2}, "too_many_tokens"),
        ({"input_ids": [5, 6], "max_new_tokens": 33}, "max_new_tokens_out_of_range"),
        ({"input_ids": [5, 6], "max_new_tokens": 0}, "max_new_tokens_out_of_range"),
        ({"input_ids": [5, 6], "max_new_tokens": 4, "logits_positions": [4]}, "position_out_of_range"),
        ({"input_ids": [5, 6], "max_new_tokens": 4, "logits_positions": [-1]}, "position_out_of_range"),
        (
            {"input_ids": [5, 6], "max_new_tokens": 8, "logits_positions": list(range(5))},
            "too_many_positions",
        ),
        ({"input_ids": [5, 10**6], "max_new_tokens": 2}, "token_id_out_of_range"),
        ({"input_ids": [5, -3], "max_new_tokens": 2}, "token_id_out_of_range"),
        ({"input_ids": "five", "max_new_tokens": 2}, "invalid_request"),
    ],
)
def test_malformed_requests_get_422_with_a_code(limited_url: str, body: dict[str, Any], code: str) -> None:
    reply = httpx.post(f"{limited_url}/inference", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["code"] == code and reply.json()["detail"]


@pytest.fixture(scope="module")
def limited_url(tmp_path_factory: pytest.TempPathFactory, honest_model: LoadedModel) -> Iterator[str]:
    settings = dev_settings(
        tmp_path_factory.mktemp("limited"),
        inference_max_input_tokens=64,
        inference_max_new_tokens=32,
        inference_max_logits_positions=4,
    )
    with serving(create_app(settings, honest_model)) as url:
        yield url


def test_body_that_is_not_json_gets_422(limited_url: str) -> None:
    reply = httpx.post(
        f"{limited_url}/inference", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert reply.status_code == 422 and reply.json()["code"] == "invalid_request"


# --- the queue ---------------------------------------------------------------------------------------------
def test_busy_server_answers_503_past_the_queue_bound(tmp_path: Path, honest_model: LoadedModel) -> None:
    release = threading.Event()
    gated = clone_model(honest_model.model, torch.float32)

    def hold(module: Any, args: Any) -> None:  # the first request occupies the device until released
        release.wait(30)

    gated.register_forward_pre_hook(hold)
    served = LoadedModel(gated, honest_model.tokenizer, "gated", torch.float32, torch.device("cpu"))
    body = {"input_ids": [5, 6, 7], "max_new_tokens": 2}
    with serving(create_app(dev_settings(tmp_path, inference_queue_size=1), served)) as url:
        replies: list[httpx.Response] = []

        def send() -> None:
            replies.append(httpx.post(f"{url}/inference", json=body, timeout=60))

        workers = [threading.Thread(target=send) for _ in range(2)]
        workers[0].start()
        _wait_for(lambda: httpx.get(f"{url}/health").json()["busy"])
        workers[1].start()
        _wait_for(lambda: httpx.get(f"{url}/health").json()["queued"] == 1)
        refused = httpx.post(f"{url}/inference", json=body)
        assert refused.status_code == 503 and refused.json()["code"] == "busy"
        release.set()
        for worker in workers:
            worker.join(timeout=60)
    assert [r.status_code for r in replies] == [200, 200]


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


# --- on a real chain: signed requests from validators only -----------------------------------------------
@pytest.fixture
def chain_server(
    tmp_path: Path, honest_model: LoadedModel
) -> Iterator[tuple[str, Keypair, Keypair, Keypair]]:
    miner, validator, stranger = (
        Keypair.create_from_uri(f"//Inference{n}") for n in ("Miner", "Validator", "Stranger")
    )
    chain = DevChain(tmp_path / "chain.sqlite", netuid=24, block_time_seconds=1000.0)
    chain.register(miner.ss58_address, "miner")
    chain.register(validator.ss58_address, "validator", stake=10.0)
    chain.register(stranger.ss58_address, "miner")
    settings = Settings(
        _env_file=None,
        quasar_home=tmp_path / "home",
        subtensor_network="test",
        inference_rate_limit_per_minute=3,
    )
    app = create_app(settings, honest_model, chain=chain, hotkey=miner.ss58_address)
    with serving(app) as url:
        yield url, miner, validator, stranger


def _signed_post(url: str, key: Keypair, receiver: str, body: bytes) -> httpx.Response:
    headers = http_auth.sign(key, method="POST", path="/inference", body=body, receiver_ss58=receiver)
    return httpx.post(
        f"{url}/inference", content=body, headers={**headers, "content-type": "application/json"}
    )


def test_real_chain_serves_only_signed_validators_within_the_rate(
    chain_server: tuple[str, Keypair, Keypair, Keypair], verifier: Verifier
) -> None:
    url, miner, validator, stranger = chain_server
    body = b'{"input_ids": [5, 6, 7], "max_new_tokens": 2}'
    unsigned = httpx.post(f"{url}/inference", content=body)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "unsigned"
    assert _signed_post(url, stranger, miner.ss58_address, body).json()["code"] == "not_a_validator"
    wrong_receiver = _signed_post(url, validator, stranger.ss58_address, body)
    assert wrong_receiver.status_code == 401 and wrong_receiver.json()["code"] == "wrong_receiver"
    assert httpx.get(f"{url}/model_info").json()["hotkey"] == miner.ss58_address

    result, _ = verify_server(url, verifier, dev_mode=True, wallet=validator, receiver=miner.ss58_address)
    # /model_info is public; only /inference counts against the rate limit
    assert result.verdict == "pass", result.as_dict()
    assert _signed_post(url, validator, miner.ss58_address, body).status_code == 200
    assert _signed_post(url, validator, miner.ss58_address, body).status_code == 200
    limited = _signed_post(url, validator, miner.ss58_address, body)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"


# --- the older start commands: the thin module miner/inference_server.py --------------------------------
ROOT = Path(__file__).resolve().parents[2]


def _server_env(tmp_path: Path, model: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "SUBTENSOR", "MODEL_", "PORT"))
    }
    env.update(
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        QUASAR_HOME=str(tmp_path / "home"),
        SUBTENSOR_NETWORK="embedded",
        MODEL_NAME=str(model),
        DEVICE="cpu",
        MODEL_DTYPE="float32",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (cwd / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_until_served(url: str, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).json()["status"] == "ok":
                return dict(httpx.get(f"{url}/model_info", timeout=5).json())
        time.sleep(0.2)
    raise AssertionError(f"the server never became healthy:\n{log.read_text()[-3000:]}")


def test_the_script_serves_on_port_from_the_environment(tmp_path: Path, models: dict[str, Path]) -> None:
    """`PORT=P python miner/inference_server.py --host 127.0.0.1`, as in the original subnet."""
    port = _free_port()
    env = _server_env(tmp_path, models["seed0"], PORT=str(port), MINER_INFERENCE_PORT=str(_free_port()))
    script = str(ROOT / "miner" / "inference_server.py")
    with _process([sys.executable, script, "--host", "127.0.0.1"], env, tmp_path) as proc:
        info = _wait_until_served(f"http://127.0.0.1:{port}", proc, tmp_path / "server.log")
    assert info["model_name"] == str(models["seed0"]) and info["auth_required"] is False


def test_the_script_refuses_a_bad_model_like_quasar_inference(tmp_path: Path) -> None:
    env = _server_env(tmp_path, tmp_path / "no-such-model")
    script = str(ROOT / "miner" / "inference_server.py")
    done = subprocess.run([sys.executable, script, "--port", str(_free_port())], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    helped = subprocess.run([sys.executable, script, "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert helped.returncode == 0 and "--host" in helped.stdout and "--port" in helped.stdout


def test_uvicorn_serves_the_thin_module_s_app(tmp_path: Path, models: dict[str, Path]) -> None:
    """`uvicorn miner.inference_server:app`: the app is built from the settings, the model loaded at startup."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "miner.inference_server:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    with _process(command, _server_env(tmp_path, models["seed1"]), tmp_path) as proc:
        info = _wait_until_served(f"http://127.0.0.1:{port}", proc, tmp_path / "server.log")
    assert info["model_name"] == str(models["seed1"])
