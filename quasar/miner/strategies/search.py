"""The tuner's search over the knobs a kernel declares: a cheap first timing prunes, the fastest few go on.

Pure logic over data, so it imports without the miner's dependencies (the standard library and rich;
``scripts/gpu_tune.py`` runs it on a machine with torch and triton only). The caller brings the knobs
(:func:`parse_declaration` of what the kernel's ``fast/tuning.py`` declares), the setting to start
from, ``measure`` (median ms of one setting: the probe on the GPU, a plain function in tests) and
optionally ``launch_of`` (what a setting launches: settings that launch the same are timed once).

The search is coordinate descent: from the best setting so far, each knob in turn takes every value
it declares while the others stay; a faster setting becomes the best at once. Passes repeat while one
improves, ``rounds`` at most. The finalists are the fastest few that beat the start by ``min_gain``
(a fraction, at least 0), one per distinct launch;
everything else measured is pruned. The caller judges the finalists (the miner: the bench) and marks
them kept or rejected. :func:`table_with` writes a winner into a ``tuned.json``.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

Value = int | float | None
Setting = dict[str, Value]

#: Statuses of a trial. ``measured`` is temporary: the search ends it as ``finalist`` or ``pruned``.
START, MEASURED, PRUNED, FAILED, SAME, FINALIST, KEPT, REJECTED = (
    "start", "measured", "pruned", "failed", "same launch", "finalist", "kept", "rejected",
)  # fmt: skip


class DeclarationError(ValueError):
    """The knobs a kernel declares, or a setting, are not usable; the message is one line."""


@dataclass(frozen=True)
class KnobSpec:
    """A knob as the kernel declares it (``fast/tuning.py``'s ``Knob``, as data)."""

    name: str
    type: str  # "int" or "float"
    values: tuple[int | float, ...]
    default: Value
    help: str = ""

    @property
    def candidates(self) -> tuple[Value, ...]:
        """What the search tries: None (the autotuner picks) where the kernel allows it, then every value."""
        return ((None,) if self.default is None else ()) + self.values

    def allows(self, value: object) -> bool:
        if value is None:
            return self.default is None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (self.type == "float" or isinstance(value, int)) and value in self.values


def _number(value: object, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (kind == "float" and isinstance(value, float) and math.isfinite(value))


def parse_declaration(data: object) -> tuple[KnobSpec, ...]:
    """The knobs from a kernel's declaration (a list of ``{name, type, values, default, help}``)."""
    if not isinstance(data, list) or not data:
        raise DeclarationError("the kernel declares no knobs (fast/tuning.py's KNOBS is missing or empty)")
    knobs: list[KnobSpec] = []
    for i, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"knob {name!r}" if isinstance(name, str) else f"knob #{i + 1}"
        if not isinstance(name, str) or not name:
            raise DeclarationError(f"{where}: needs a name")
        kind, values, default = item.get("type"), item.get("values"), item.get("default")
        if kind not in ("int", "float"):
            raise DeclarationError(f"{where}: type must be int or float, got {kind!r}")
        if not isinstance(values, list) or not values or not all(_number(v, kind) for v in values):
            raise DeclarationError(f"{where}: values must be a non-empty list of {kind}s, got {values!r}")
        if len(set(values)) != len(values):
            raise DeclarationError(f"{where}: values repeat: {values!r}")
        if default is not None and default not in values:
            raise DeclarationError(f"{where}: default {default!r} is not one of its values {values!r}")
        if any(k.name == name for k in knobs):
            raise DeclarationError(f"{where}: declared twice")
        knobs.append(KnobSpec(name, kind, tuple(values), default, str(item.get("help", ""))))
    return tuple(knobs)


def complete(knobs: tuple[KnobSpec, ...], entry: Mapping[str, object]) -> Setting:
    """A full setting from ``entry`` (knobs left out take their defaults); DeclarationError when not allowed."""
    known = {knob.name for knob in knobs}
    unknown = sorted(str(name) for name in entry if name not in known)
    if unknown:
        raise DeclarationError(
            f"setting: unknown knob {unknown[0]!r}; the knobs are {', '.join(sorted(known))}"
        )
    setting: Setting = {}
    for knob in knobs:
        value = entry.get(knob.name, knob.default)
        if not knob.allows(value):
            raise DeclarationError(
                f"setting: {knob.name} = {json.dumps(value, default=repr)} is not one of its values"
            )
        setting[knob.name] = value
    return setting


def describe_change(start: Setting, setting: Setting) -> str:
    """``knob=value, ...`` for what ``setting`` changes from ``start`` (None: ``auto``)."""
    changed = [f"{name}={'auto' if value is None else value}" for name, value in setting.items()
               if start.get(name) != value]  # fmt: skip
    return ", ".join(changed) or "(the start)"


@dataclass
class Trial:
    """One setting the search considered, and what became of it."""

    number: int
    setting: Setting
    ms: float | None = None
    launch: str | None = None
    status: str = MEASURED
    note: str = ""


@dataclass
class SearchResult:
    knobs: tuple[KnobSpec, ...]
    start: Trial
    trials: list[Trial] = field(default_factory=list)
    finalists: list[Trial] = field(default_factory=list)
    #: Why the search ended before it converged ("" when it did).
    stopped: str = ""

    @property
    def best(self) -> Trial:
        """The fastest setting the first timing found (the start when none beat it)."""
        timed = [t for t in self.trials if t.ms is not None and t.status not in (FAILED, SAME)]
        return min(timed, key=lambda t: t.ms or math.inf, default=self.start)


def _key(setting: Setting) -> str:
    return json.dumps(setting, sort_keys=True)


def search(
    knobs: tuple[KnobSpec, ...],
    start: Setting,
    measure: Callable[[Setting], float],
    *,
    launch_of: Callable[[Setting], str | None] | None = None,
    finalists: int = 3,
    min_gain: float = 0.0,
    rounds: int = 2,
    budget_s: float | None = None,
    stop: threading.Event | None = None,
    console: Console | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Coordinate descent from ``start`` (see the module docstring); ``measure`` may raise for a setting
    that fails. Stops early when ``budget_s`` seconds have passed or ``stop`` is set."""
    deadline = math.inf if budget_s is None else time.monotonic() + budget_s
    trials: list[Trial] = []
    by_setting: dict[str, Trial] = {}
    by_launch: dict[str, Trial] = {}

    def attempt(setting: Setting) -> Trial:
        key = _key(setting)
        if key in by_setting:
            return by_setting[key]
        trial = Trial(len(trials) + 1, setting)
        trials.append(trial)
        by_setting[key] = trial
        try:
            trial.launch = launch_of(setting) if launch_of else None
            if trial.launch is not None and trial.launch in by_launch:
                trial.status, trial.note = SAME, f"launches what #{by_launch[trial.launch].number} does"
            else:
                trial.ms = float(measure(setting))
                if trial.launch is not None:
                    by_launch[trial.launch] = trial
        except Exception as exc:  # a setting that fails is a result of the search, not its end
            trial.status, trial.note = FAILED, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        if on_trial:
            on_trial(trial)
        return trial

    per_pass = sum(len(knob.candidates) for knob in knobs)
    progress = Progress(
        TextColumn("tune {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console or Console(stderr=True), transient=False,
    )  # fmt: skip
    with progress:
        task = progress.add_task("the start", total=per_pass + 1)
        first = attempt(dict(start))
        first.status = START if first.status == MEASURED else first.status
        progress.advance(task)
        result = SearchResult(knobs, first, trials)
        if first.ms is None:
            result.stopped = f"the start itself failed: {first.note}"
            return result
        best = first
        for number in range(1, rounds + 1):
            improved = False
            if number > 1:
                progress.update(task, total=number * per_pass + 1)
            for knob in knobs:
                for value in knob.candidates:
                    if stop is not None and stop.is_set():
                        result.stopped = "stopped"
                    elif time.monotonic() > deadline:
                        result.stopped = f"the time budget of {budget_s:g} s was spent"
                    if result.stopped:
                        break
                    progress.update(task, description=f"pass {number}: {knob.name}={value}")
                    trial = attempt({**best.setting, knob.name: value})
                    if trial.ms is not None and best.ms is not None and trial.ms < best.ms:
                        best, improved = trial, True
                    progress.advance(task)
                if result.stopped:
                    break
            if result.stopped or not improved:
                break

    # A finalist is faster than the start, whatever the gain asked (a negative one included).
    threshold = first.ms * (1.0 - max(0.0, min_gain))
    ranked = sorted((t for t in trials if t.status == MEASURED), key=lambda t: t.ms or math.inf)
    for trial in ranked:
        if trial.ms is not None and trial.ms < threshold and len(result.finalists) < finalists:
            trial.status = FINALIST
            result.finalists.append(trial)
        else:
            trial.status = PRUNED
    return result


def summary_table(result: SearchResult, title: str = "tune: what was tried") -> Table:
    """Every trial: what it changes from the start, its first timing, and what became of it."""
    table = Table(title=title)
    for column in ("#", "setting", "ms", "vs start", "status"):
        table.add_column(column, justify="right" if column in ("#", "ms", "vs start") else "left")
    start_ms = result.start.ms
    for trial in result.trials:
        ms = "" if trial.ms is None else f"{trial.ms:.4f}"
        ratio = f"{trial.ms / start_ms:.3f}x" if trial.ms is not None and start_ms else ""
        status = trial.status + (f": {trial.note}" if trial.note else "")
        table.add_row(
            str(trial.number), describe_change(result.start.setting, trial.setting), ms, ratio, status
        )
    if result.stopped:
        table.caption = f"search ended early: {result.stopped}"
    return table


def render(table: Table, width: int = 160) -> str:
    """A rich table as plain text, for a log line."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def table_with(text: str | None, gpu: str, setting: Setting) -> str:
    """The text of a ``tuned.json`` whose entry for ``gpu`` is ``setting``, other entries as they were."""
    try:
        data = json.loads(text) if text and text.strip() else {}
    except ValueError as exc:
        raise DeclarationError(f"tuned.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DeclarationError(
            f"tuned.json must be an object of GPU name: settings, got {type(data).__name__}"
        )
    data[gpu] = dict(setting)
    return json.dumps(dict(sorted(data.items())), indent=2) + "\n"
