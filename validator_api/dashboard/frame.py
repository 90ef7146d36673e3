"""The frame of every dashboard page (inline style and script under the CSP nonce, header, footer), and
the error page."""

from __future__ import annotations

from validator_api.dashboard.parts import (
    _e,
)

_CSS = """
:root{--bg:#0b1020;--card:#141a2e;--line:#252d48;--text:#e6e9f2;--muted:#8b93ad;--accent:#7aa2ff;
--ok:#3ecf8e;--bad:#ff6b6b;--warn:#f5b84b}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.4rem 1rem;padding:1.1rem 1.25rem;
border-bottom:1px solid var(--line)}
header h1{margin:0;font-size:1.3rem;letter-spacing:.04em}header h1 a{color:var(--text)}
header .meta{color:var(--muted);font-size:.9rem}
header nav{margin-left:auto;display:flex;gap:.9rem;font-size:.92rem}
header nav a.on{color:var(--text);font-weight:600}
main{max-width:1100px;margin:0 auto;padding:1rem;display:grid;gap:1rem;grid-template-columns:minmax(0,1fr)}
@media(min-width:900px){main{grid-template-columns:minmax(0,1fr) minmax(0,1.35fr)}
.span{grid-column:1/-1}}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1rem 1.1rem;min-width:0}
.card h2{margin:0 0 .75rem;font-size:1rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.06em}
.card h3{margin:1rem 0 .4rem;font-size:.85rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.05em}
.accent{color:var(--accent)}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:.75rem}
.stat .label{color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.05em}
.stat .value{font-size:1.15rem;font-weight:600;overflow-wrap:anywhere}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{padding:.5rem .55rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
td.why,td.long{white-space:normal;min-width:10rem}td.long{overflow-wrap:anywhere}
th{color:var(--muted);font-weight:600;font-size:.78rem;text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.c,th.c{text-align:center}
tr.counted td.rank{color:var(--accent);font-weight:700}
tr.uncounted td{color:#b8bfd4}
.strong{font-weight:700}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86rem}
.ok{color:var(--ok);font-weight:700}.bad{color:var(--bad);font-weight:700}.muted{color:var(--muted)}
.warn{color:var(--warn);font-weight:700}.burn{color:var(--warn)}
.empty{text-align:center;padding:1.2rem}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:999px;font-size:.78rem;background:#2a3352}
.ci{display:block;font-weight:400;font-size:.8em;color:var(--muted)}
.s-scored,.s-open,.s-pass,.s-working{background:rgba(62,207,142,.15);color:var(--ok)}
.s-rejected,.s-expired,.s-fail,.s-duplicate{background:rgba(255,107,107,.15);color:var(--bad)}
.s-evaluating,.s-revealed,.s-committed,.s-error,.s-recent{background:rgba(245,184,75,.15);color:var(--warn)}
.reason{color:var(--muted);font-size:.8rem}
.sandbox{display:block;color:var(--muted);font-size:.72rem}
code.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.82rem;
background:#1d2540;border-radius:4px;padding:.05rem .3rem}
.words{color:var(--muted);font-size:.82rem}
.detail{display:block;color:var(--muted);font-size:.75rem;white-space:normal;overflow-wrap:anywhere;max-width:28rem}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.note{color:var(--muted);font-size:.8rem;margin:.75rem 0 0}
.rounds{display:flex;flex-wrap:wrap;gap:.35rem;margin-top:.9rem}
.pill{display:inline-block;padding:.1rem .55rem;border:1px solid var(--line);border-radius:999px;font-size:.8rem}
.pill.on{background:var(--accent);color:var(--bg);border-color:var(--accent)}
.pill.now{border-color:var(--accent)}
svg{width:100%;height:auto;display:block}
svg.bar{display:inline-block;width:120px;height:8px;border-radius:4px;vertical-align:middle}
.bar .track{fill:var(--line)}.bar .fill{fill:var(--accent)}.bar .burnfill{fill:var(--warn)}
.sandbox-line{display:block}
.grid{stroke:var(--line);stroke-width:1}.axis{fill:var(--muted);font-size:11px}
.line{fill:none;stroke-width:2.5;stroke-linejoin:round}.line.best{stroke:var(--accent)}
.line.baseline{stroke:var(--muted);stroke-dasharray:5 5;stroke-width:1.5}
.gap-band{fill:var(--line);opacity:.55}
.dot.best{fill:var(--accent);stroke:var(--card);stroke-width:2}
.legend{display:flex;flex-wrap:wrap;gap:1rem;font-size:.82rem;margin-top:.5rem}
.key{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:.35rem;border-radius:2px}
.key.best{background:var(--accent)}.key.baseline{background:var(--muted)}.key.gap{background:var(--line);height:10px}
.full-hotkey{overflow-wrap:anywhere;font-size:.95rem}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:1rem 1rem 2rem}
.abbr{display:none}
@media(max-width:600px){.wide,.full,.reason,.sandbox{display:none}.abbr{display:inline}header{padding:.9rem 1rem}
header nav{margin-left:0}main{padding:.6rem}.card{padding:.85rem .7rem}th,td{padding:.45rem .3rem}
table{font-size:.86rem}th{font-size:.7rem;letter-spacing:0}.mono{font-size:.8rem}.axis{font-size:20px}
td.why,td.long{min-width:9rem}td.wrap{white-space:normal}}
"""

# Counts the round's time left down every second and reloads the page every REFRESH seconds so it
# stays current without a client-side data layer; a page of a finalized round, or ?refresh=0, is not.
_JS = """
(function(){var REFRESH=30;var el=document.getElementById('round');
var out=document.getElementById('time-left');var left=el&&el.dataset.secondsLeft;
if(out&&left){left=parseInt(left,10);var t0=Date.now();
function pad(n){return(n<10?'0':'')+n}
function fmt(s){s=Math.max(0,s);var d=Math.floor(s/86400),h=Math.floor(s%86400/3600),
m=Math.floor(s%3600/60),x=s%60;return d?d+'d '+h+'h '+m+'m':h?h+'h '+pad(m)+'m':m+'m '+pad(x)+'s'}
setInterval(function(){out.textContent=fmt(left-Math.floor((Date.now()-t0)/1000))},1000)}
if(document.body.dataset.refresh==='1'&&!/[?&]refresh=0/.test(location.search)){
setTimeout(function(){location.reload()},REFRESH*1000)}})();
"""


def _frame(
    *, title: str, meta: str, content: str, nonce: str, version: str, active: str = "", refresh: bool = True
) -> str:
    def tab(href: str, name: str, label: str) -> str:
        on = ' class="on" aria-current="page"' if active == name else ""
        return f'<a href="{href}"{on}>{label}</a>'

    nav = f'<nav aria-label="pages">{tab("/", "round", "Rounds")}{tab("/validators", "validators", "Validators")}</nav>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="color-scheme" content="dark"><title>{_e(title)}</title>'
        f'<style nonce="{_e(nonce)}">{_CSS}</style></head><body data-refresh="{1 if refresh else 0}">'
        f'<header><h1><a href="/">QUASAR</a></h1><span class="meta">{meta}</span>{nav}</header><main>'
        f"{content}"
        "</main><footer>QUASAR Validator API "
        f'{_e(version)} · <a href="/docs">API docs</a> · <a href="/v1/history">history JSON</a> · '
        '<a href="/metrics">metrics</a></footer>'
        f'<script nonce="{_e(nonce)}">{_JS}</script></body></html>'
    )


def _meta(network: str, netuid: int, block: int | None = None, *, with_block: bool = False) -> str:
    meta = f"{_e(network)} · netuid {int(netuid)}"
    if with_block:
        meta += " · " + _e(f"block {block:,}" if block is not None else "chain unavailable")
    return meta


def render_error(status: int, title: str, message: str, *, nonce: str, version: str) -> str:
    """A 400 or 404 page in the dashboard's frame; `message` may hold what the visitor typed: escaped."""
    content = (
        f'<section class="card span" id="error" data-status="{int(status)}"><h2>{int(status)} · {_e(title)}</h2>'
        f'<p>{_e(message)}</p><p><a href="/">Back to the current round</a> · <a href="/validators">validators</a>'
        "</p></section>"
    )
    return _frame(
        title=f"QUASAR · {int(status)} {title}", meta="", content=content, nonce=nonce, version=version,
        refresh=False,
    )  # fmt: skip
