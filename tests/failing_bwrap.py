"""A ``bwrap`` that fails as bubblewrap does in a default Docker container, for the sandbox tests.

Putting it first on the PATH makes ``detect()`` see a machine where bubblewrap cannot build its
namespaces, so the tests can prove the fallback (the unshare walls) and the refusals on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STDERR = "bwrap: Creating new namespace failed: Operation not permitted"


def put_failing_bwrap_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, only: list[str] | None = None, forget: bool = True
) -> Path:
    """Write the failing ``bwrap`` into a fresh directory and put it first on the PATH; with ``only``,
    the PATH holds nothing else but links to those tools (to take ``unshare`` away, say). ``forget``
    drops the remembered probes, so that the next ``detect()`` sees the change."""
    from quasar.evaluation import sandbox

    tools = tmp_path / "failing-bwrap"
    tools.mkdir()
    (tools / "bwrap").write_text(f"#!/bin/sh\necho '{STDERR}' >&2\nexit 1\n")
    (tools / "bwrap").chmod(0o755)
    if only is None:
        monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    else:
        import shutil

        for tool in only:
            found = shutil.which(tool)
            if found:
                (tools / tool).symlink_to(found)
        monkeypatch.setenv("PATH", str(tools))
    if forget:
        sandbox.forget_probes()
    return tools
