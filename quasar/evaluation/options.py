"""How a validator evaluates, and what its results are measured against: ``EvaluationOptions``, the
evaluator's version and the baseline's identity. Read by the evaluation parent, the validator and
``quasar evaluate``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fetch import FetchLimits
from .sandbox import Mechanisms, Requirement, SandboxLimits, detect
from .timed_runs import ComparisonPlan

if TYPE_CHECKING:
    from quasar.config import Settings

#: Changes whenever what a result's numbers mean changes (cases, timing protocol, statistics): a
#: round combines only results of one version.
EVALUATOR_VERSION = "2026.12.07.1"


@functools.cache
def baseline_id() -> str:
    """sha256 of the trusted baseline's files (``quasar/kernels``): what the speed-up is against.
    Read once per process: a validator whose code changes restarts."""
    import hashlib

    import quasar.kernels

    root = Path(quasar.kernels.__file__).parent
    digest = hashlib.sha256()
    # The sources and the tuned launch settings beside them (``fast/tuned.json``): both set its speed.
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass
class EvaluationOptions:
    """How to evaluate. Defaults suit a validator; tests shrink the limits."""

    device: str = "cpu"
    gpu_index: int | None = None
    seed: int | None = None
    quick: bool = False
    dev_mode: bool = False
    allowed_hosts: list[str] = field(default_factory=lambda: ["github.com"])
    #: The isolation a run must get (``SANDBOX_REQUIRE``); see ``sandbox.detect``.
    sandbox_require: Requirement = "namespaces"
    allow_unsandboxed: bool = False
    cgroup_parent: str | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    fetch_limits: FetchLimits = field(default_factory=FetchLimits)
    #: Longest the import of the entry point may take (it is also bounded by ``limits.wall_s``).
    import_timeout_s: float = 300.0
    #: Trusted timing: batches, pairs and checks; None picks ``ComparisonPlan.for_device``.
    comparison: ComparisonPlan | None = None
    #: The validator's cache of the baseline's compiled kernels (Triton): filled only by the
    #: baseline's worker, copied into each worker's own cache at start; None: none kept.
    kernel_cache_dir: str | None = None
    #: A speed-up counts only if its interval's low end reaches 1 + this (``WIN_MARGIN``).
    win_margin: float = 0.01
    work_dir: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, device: str = "cpu", gpu_index: int | None = None, **overrides: Any
    ) -> EvaluationOptions:
        """The options a validator (and ``quasar evaluate``) evaluates with, from the settings."""
        options = cls(
            device=device, gpu_index=gpu_index, quick=settings.evaluation_quick, dev_mode=settings.dev_mode,
            allowed_hosts=list(settings.allowed_repo_hosts), sandbox_require=settings.sandbox_require,
            allow_unsandboxed=settings.quasar_allow_unsandboxed, cgroup_parent=settings.sandbox_cgroup_parent,
            limits=SandboxLimits(
                wall_s=settings.evaluation_timeout_seconds, memory_bytes=settings.sandbox_memory_mb * 2**20,
                max_pids=settings.sandbox_max_pids,
            ),
            fetch_limits=FetchLimits(timeout_s=settings.fetch_timeout_seconds), win_margin=settings.win_margin,
            kernel_cache_dir=str(settings.validator_state_path / "kernel-cache"),
        )  # fmt: skip
        return replace(options, **overrides)

    def detect_sandbox(self) -> Mechanisms:
        """The sandbox these options get here (``sandbox.detect``), or :class:`SandboxUnavailable`."""
        return detect(
            require=self.sandbox_require,
            allow_unsandboxed=self.allow_unsandboxed,
            cgroup_parent=self.cgroup_parent,
        )
