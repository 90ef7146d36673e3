"""The `.env` file, read one way everywhere: by python-dotenv, the parser the settings use.

`quasar env` (or `python -m quasar.envfile`) prints one `export KEY='value'` line per variable that
`.env` sets, each value quoted with `shlex.quote`, for the START_*.sh scripts to `eval`: a value is
never run as shell code (`WEIGHT_SPLIT=[0.60, 0.25, 0.10, 0.05]` stays a JSON list). A variable
already in the environment is left out, so the environment wins over `.env` there as it does in the
settings.

`describe_settings_error` turns what reading the settings raised into one line that names each
refused variable, where its value came from (the environment or the `.env` file) and a right value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# What bash accepts as a variable name: anything else cannot be exported.
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_file_path() -> Path:
    """The `.env` the settings read (relative to the current directory, as pydantic-settings has it)."""
    from quasar.config import Settings

    return Path(str(Settings.model_config.get("env_file") or ".env"))


def read_env_file(path: Path) -> dict[str, str | None]:
    """`path`'s variables exactly as the settings see them (python-dotenv, same encoding); {} if absent."""
    from dotenv import dotenv_values

    from quasar.config import Settings

    if not path.is_file():
        return {}
    encoding = Settings.model_config.get("env_file_encoding") or "utf-8"
    return dict(dotenv_values(path, encoding=encoding))


def _keys_in(path: Path) -> set[str]:
    """The names `path` sets, lower-cased (no interpolation, no warnings: only for naming a source)."""
    from dotenv.parser import parse_stream

    if not path.is_file():
        return set()
    with path.open(encoding="utf-8") as stream:
        return {binding.key.lower() for binding in parse_stream(stream) if binding.key}


def unparsable_lines(path: Path) -> list[int]:
    """Lines of `path` python-dotenv cannot parse (it, and so the settings, skip them)."""
    from dotenv.parser import parse_stream

    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as stream:
        return [binding.original.line for binding in parse_stream(stream) if binding.error]


def shell_exports(
    values: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """(`export` lines for bash, names left out because bash cannot name them).

    Keys without a value (a bare `KEY` line) and keys already in `environ` are left out silently.
    """
    lines: list[str] = []
    refused: list[str] = []
    for key, value in values.items():
        if value is None or key in environ:
            continue
        if not _SHELL_NAME.match(key):
            refused.append(key)
            continue
        lines.append(f"export {key}={shlex.quote(value)}")
    return lines, refused


def main(argv: list[str] | None = None) -> int:
    """Print the `export` lines of `.env` (or of the file given); 0 with nothing to print when absent."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(
            "usage: quasar env [FILE]   (prints `export KEY='value'` lines of FILE, default .env, for eval)"
        )
        return 0
    path = Path(args[0]) if args else env_file_path()
    logging.getLogger("dotenv.main").setLevel(logging.ERROR)  # its warning is the one printed below
    for line in unparsable_lines(path):
        print(f"warning: {path} line {line} is not KEY=value; it is ignored", file=sys.stderr)
    lines, refused = shell_exports(read_env_file(path), os.environ)
    for key in refused:
        print(
            f"warning: {path}: {key!r} is not a variable name a shell can export; it is ignored",
            file=sys.stderr,
        )
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


# --- one-line errors of the settings -----------------------------------------------------------------
def example_value(field_name: str) -> str | None:
    """A right value of the setting `field_name` as it would be written in `.env`, if one is known."""
    from quasar.config import Settings
    from quasar.database_url import DATABASE_URL_EXAMPLE
    from quasar.profiles import PROFILE_DEFAULTS

    if field_name == "database_url":
        return DATABASE_URL_EXAMPLE
    field = Settings.model_fields.get(field_name)
    if field is None:
        return None
    value: Any = field.default
    if value is None:
        value = PROFILE_DEFAULTS["chain"].get(field_name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _source(name: str, env_file: Path) -> str:
    """Where the settings took the variable `name` from: the environment wins over `.env`."""
    lowered = name.lower()
    if any(key.lower() == lowered for key in os.environ):
        return " (from the environment)"
    if lowered in _keys_in(env_file):
        return f" (in {env_file.resolve()})"
    return ""


def _one(name: str, reason: str, env_file: Path) -> str:
    variable = name.upper()
    text = reason if reason.startswith(variable) else f"{variable}: {reason}"
    # Put the source right after the name: "PORT (in /srv/.env): ...".
    text = variable + _source(variable, env_file) + text[len(variable) :]
    example = example_value(name.lower())
    if example is not None and "e.g." not in text:
        text += f"; e.g. {variable}={example}"
    return text


def describe_settings_error(exc: Exception, env_file: Path | None = None) -> str:
    """What reading the settings raised, as one line (no value is repeated: it may be a password)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from quasar.config import Settings

    env_file = env_file_path() if env_file is None else env_file
    if isinstance(exc, SettingsError):
        found = re.search(r'error parsing value for field "(\w+)" from source "(\w+)"', str(exc))
        if found is None:
            return str(exc).replace("\n", " ")
        return _one(found.group(1), "not JSON (lists and objects are written as JSON)", env_file)
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors():
            reason = error["msg"].removeprefix("Value error, ")
            loc = [str(p) for p in error["loc"]]
            name = loc[0] if loc else ""
            if len(loc) > 1:  # an item of a list: WEIGHT_SPLIT item 1
                reason = f"item {'.'.join(loc[1:])}: {reason}"
            if not name:  # a check of the whole model: its message starts with the variable's name
                leading = re.match(r"[A-Z][A-Z0-9_]+\b", reason)
                if leading and leading.group(0).lower() in Settings.model_fields:
                    name = leading.group(0)
            parts.append(_one(name, reason, env_file) if name else reason)
        return "; ".join(parts)
    return str(exc).replace("\n", " ")


if __name__ == "__main__":
    raise SystemExit(main())
