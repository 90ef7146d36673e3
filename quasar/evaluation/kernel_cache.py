"""The validator's cache of the baseline's compiled Triton kernels (``VALIDATOR_STATE_DIR/kernel-cache``).

Only the baseline's worker, which never imports submission code, fills it; the evaluation parent
merges what that worker exported (``merge_cache``). Both workers get it read-only and copy it into
their own Triton cache at start, so a submission only ever changes its own copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def merge_cache(source: Path, cache: Path) -> None:
    """Add the entries of an exported Triton cache to ``cache``: each entry directory is copied
    aside and renamed into place, so a reader never sees half of one."""
    for entry in source.iterdir():
        target = cache / entry.name
        if target.exists() or not entry.is_dir():
            continue
        staging = cache / f".{entry.name}.{os.getpid()}.tmp"
        shutil.copytree(entry, staging, dirs_exist_ok=True)
        try:
            os.rename(staging, target)
        except OSError:  # another validator process added it first
            shutil.rmtree(staging, ignore_errors=True)
