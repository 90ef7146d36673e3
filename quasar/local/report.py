"""What `quasar local up` prints: the dev chain and the API, and at the round's end its leaderboard and weights."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from quasar.config import Settings
from quasar.local.hotkeys import DevIdentity
from quasar.reasons import REASONS, describe

console = Console(stderr=True)

ROLE_WORDS = {
    "owner": "the subnet owner (uid 0 is also the burn uid)",
    "miner": "honest miner",
    "cheater": "cheating miner",
    "validator": "validator",
}


def describe_entry(entry: Any, names: dict[str, str], baseline_ms: float | None) -> str:
    who = names.get(entry.hotkey, entry.hotkey[:12] + "…")
    if entry.counted:
        timing = f"{entry.score:.2f}x as fast as the baseline"
        if entry.score_ci_low is not None and entry.score_ci_high is not None:
            timing += f" (95% interval {entry.score_ci_low:.2f}-{entry.score_ci_high:.2f}x)"
        if entry.median_ms and baseline_ms:
            timing += f" ({entry.median_ms:.1f} ms vs {baseline_ms:.1f} ms)"
        verified = ", logits verified" if entry.verified else ""
        return f"#{entry.rank} {who}: correct, {timing}{verified}"
    if entry.status == "scored" and entry.correct is False:
        why = describe(entry.reason) if entry.reason in REASONS else f"it failed ({entry.reason})"
        return f"–  {who}: rejected: {why} (reason code {entry.reason})"
    if entry.status == "scored" and entry.correct and entry.verified is False:
        return f"–  {who}: kernel correct, but its inference server failed logit verification"
    if entry.status == "scored" and entry.inconclusive and entry.score is not None:
        return (
            f"–  {who}: correct, {entry.score:.2f}x, but its 95% interval ({entry.score_ci_low:.2f}-"
            f"{entry.score_ci_high:.2f}x) straddles the winning margin: inconclusive, not counted"
        )
    if entry.status == "scored" and entry.score is not None:
        interval = ""
        if entry.score_ci_low is not None and entry.score_ci_high is not None:
            interval = f" (95% interval {entry.score_ci_low:.2f}-{entry.score_ci_high:.2f}x)"
        return (
            f"–  {who}: correct but only {entry.score:.2f}x the baseline{interval}: not faster by the winning"
            " margin"
        )
    why = describe(entry.reason or entry.status)
    return f"–  {who}: {entry.status} ({why})"


def summarize(
    settings: Settings, identities: Iterable[DevIdentity], round_id: int, leaderboard: Any, round_info: Any,
    weights: Any, block: int,
) -> None:  # fmt: skip
    """The round's end: its baseline, leaderboard, and the weights the validator set at ``block``."""
    identities = list(identities)
    names = {i.hotkey: f"{ROLE_WORDS[i.role]} (uid {i.uid})" for i in identities}
    uid_words = {i.uid: ROLE_WORDS[i.role] for i in identities}
    console.rule(f"[bold]round {round_id} is over")
    baseline = round_info.baseline_ms
    if baseline:
        console.print(
            f"Baseline kernel, measured by the validator on its own device: {baseline:.1f} ms per call."
        )
    console.print("Leaderboard (speed measured by the validator; miners' own numbers never count):")
    for entry in leaderboard.entries:
        console.print("  " + describe_entry(entry, names, baseline))
    console.print(f"Weights set on the dev chain by the validator at block {block}:")
    table = Table("uid", "who", "weight")
    for uid, weight in zip(weights.uids, weights.weights, strict=True):
        table.add_row(str(uid), uid_words.get(uid, "?"), f"{weight:.2f}")
    console.print(table)
    burn = settings.burn_uid
    if burn in weights.uids and len(weights.uids) > 1:
        console.print(
            f"  uid {burn} is the burn uid: the shares no miner earned (places 2–4 of "
            f"{settings.weight_split}) go there rather than to anyone who did not beat the baseline."
        )
    elif weights.uids == [burn]:
        console.print(
            f"  nobody beat the baseline by {settings.win_margin:.0%}: all weight is burned (uid {burn})."
        )



def show_state(url: str, identities: list[DevIdentity]) -> None:
    from quasar.client import ValidatorApiClient

    client = ValidatorApiClient(url)
    info = client.info()
    health = client.health()
    table = Table("role", "uid", "hotkey", title="dev chain")
    for ident in identities:
        table.add_row(ident.role, str(ident.uid), ident.hotkey)
    console.print(table)
    console.print(
        f"API [bold]{url}[/] · hotkey {info.api_hotkey} · netuid {info.netuid} · "
        f"block {health.block} · status {health.status}"
    )
    current = client.current_round()
    if current is not None:
        console.print(
            f"round {current.id}: blocks {current.start_block}–{current.end_block} ({current.status})"
        )
    weights = client.weights()
    console.print(f"weights: uids {weights.uids} → {weights.weights}")

