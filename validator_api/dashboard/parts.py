"""The small pieces every dashboard page is built from: escaping (`_e`), numbers, durations, links, tables.

Anything a miner or validator controls goes through `_e` before it reaches a page; only http(s)
URLs become links (`_safe_link`), and a hotkey in a link is percent-encoded first (`_miner`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from quasar.reasons import describe, describe_logit


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(hotkey: str) -> str:
    return hotkey if len(hotkey) <= 12 else f"{hotkey[:5]}…{hotkey[-5:]}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return '<span class="muted">never</span>'
    return f'<span title="{_e(then.isoformat(timespec="seconds"))}">{_e(_duration((now - then).total_seconds()))} ago</span>'


def _muted(text: str = "—") -> str:
    return f'<span class="muted">{_e(text)}</span>'


def _check(value: bool | None, *, off: bool = False) -> str:
    if off:
        return '<span class="muted" title="logit verification is off">off</span>'
    if value is None:
        return '<span class="muted" title="not checked yet">—</span>'
    return (
        '<span class="ok" title="passed">✓</span>' if value else '<span class="bad" title="failed">✗</span>'
    )


def _badge(status: str) -> str:
    return f'<span class="badge s-{_e(status)}">{_e(status)}</span>'


def _miner(hotkey: str | None, *, full: bool = False) -> str:
    """A hotkey linking to its miner page (percent-encoded in the path, escaped in the attribute)."""
    if not hotkey:
        return _muted()
    label = hotkey if full else _short(hotkey)
    return f'<a class="mono" href="/miners/{_e(quote(hotkey, safe=""))}" title="{_e(hotkey)}">{_e(label)}</a>'


def _hotkey(hotkey: str | None) -> str:
    """A hotkey shown, not linked (validators have no page of their own)."""
    if not hotkey:
        return _muted()
    return f'<span class="mono" title="{_e(hotkey)}">{_e(_short(hotkey))}</span>'


def _round_link(round_id: int) -> str:
    return f'<a href="/?round_id={int(round_id)}">#{int(round_id)}</a>'


def _reason(code: str | None, *, logit: bool = False) -> str:
    """A reason code and its sentence from quasar.reasons (an unknown code is shown as it is)."""
    if not code:
        return ""
    words = describe_logit(code) if logit else describe(code)
    sentence = f' <span class="words">{_e(words)}</span>' if words != code else ""
    return f'<code class="code">{_e(code)}</code>{sentence}'


def _interval(low: float | None, high: float | None, inconclusive: bool | None) -> str:
    if low is None or high is None:
        return ""
    # The 95% interval; an inconclusive one never counts, and says so.
    text = f"{low:.2f}–{high:.2f}" + (", inconclusive" if inconclusive else "")
    return f'<span class="ci" title="95% interval">{_e(text)}</span>'


def _safe_link(url: str | None, sha: str | None) -> str:
    if not url:
        return '<span class="muted">—</span>'
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: show it, never link it
        return f'<span class="mono">{_e(url)}</span>'
    label = _e("/".join(parts.path.strip("/").split("/")[-2:]) or parts.netloc or url)
    if sha:
        label += f"@{_e(sha[:8])}"
    # Only plain web links become clickable: a javascript: or data: URL stays inert text.
    if parts.scheme in ("http", "https") and parts.netloc:
        return f'<a href="{_e(url)}" rel="nofollow noopener noreferrer" target="_blank">{label}</a>'
    return f'<span title="{_e(url)}">{label}</span>'


def _stats(stats: Sequence[tuple[str, str]]) -> str:
    cells = "".join(
        f'<div class="stat"><div class="label">{k}</div><div class="value">{v}</div></div>' for k, v in stats
    )
    return f'<div class="stats">{cells}</div>'


def _table(table_id: str, head: str, rows: Sequence[str], empty: str, columns: int) -> str:
    body = "".join(rows) or f'<tr><td colspan="{columns}" class="muted empty">{_e(empty)}</td></tr>'
    return (
        f'<div class="table-wrap"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
