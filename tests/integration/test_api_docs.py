"""The API's documentation pages work offline: /docs and /redoc load their assets from the API itself.

FastAPI's defaults fetch Swagger UI and ReDoc from a CDN, so on a host that reaches nothing the pages
were blank. A real uvicorn server on loopback serves the pages; every URL they reference is on the
API, and each answers 200 with a script, style or image content type. Where Debian's `chromium` is
installed, it loads /docs with every host name but the loopback address unresolvable, and Swagger
UI must render the API's title and its routes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ApiServer, launch

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = launch("sqlite", tmp_path_factory.mktemp("api-docs"), None, validators=1, miners=1)
    yield server
    server.stop()


def _referenced(page: str) -> list[str]:
    """Every URL the page loads: script and link targets, ReDoc's spec-url and Swagger's `url:`."""
    urls = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)\"", page)
    urls += re.findall(r"\bspec-url=\"([^\"]+)\"", page)
    urls += re.findall(r"\burl: '([^']+)'", page)
    return urls


@pytest.mark.parametrize(
    ("page", "asset_kinds"), [("/docs", {".js", ".css", ".png"}), ("/redoc", {".js", ".png"})]
)
def test_docs_pages_reference_only_assets_the_api_serves(
    api: ApiServer, page: str, asset_kinds: set[str]
) -> None:
    response = api.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "://" not in html and "fonts.googleapis" not in html, "the page names another host"
    urls = _referenced(html)
    assert "/openapi.json" in urls, urls
    assets = [u for u in urls if u != "/openapi.json"]
    assert {Path(u).suffix for u in assets} == asset_kinds, assets
    for url in assets:
        assert url.startswith("/") and not url.startswith("//"), url
        got = api.get(url)
        assert got.status_code == 200, (url, got.status_code)
        assert got.headers["content-type"].startswith(CONTENT_TYPES[Path(url).suffix]), (url, got.headers)
        assert len(got.content) > 1000, url
    assert api.get("/openapi.json").json()["info"]["title"] == "QUASAR Validator API"


def test_swagger_ui_is_the_one_that_reads_openapi_3_1(api: ApiServer) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI reads from version 5 on (4.x shows an error)."""
    assert api.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = api.get("/docs-assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', bundle)
    assert version and int(version.group(1)) >= 5, version


def test_a_missing_asset_is_the_api_s_json_404(api: ApiServer) -> None:
    response = api.get("/docs-assets/nothing.js")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_render_in_headless_chromium_that_reaches_only_the_api(
    api: ApiServer, tmp_path: Path, page: str
) -> None:
    binary = _chromium()
    assert binary is not None
    argv = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # Offline: no name resolves and no proxy is used, so only the loopback API can answer.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--no-proxy-server",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", "--dump-dom",
        api.base_url + page,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "QUASAR Validator API" in re.sub(r"<title>.*?</title>", "", dom), dom[:2000]
    if page == "/docs":  # Swagger UI built its page: the info block and one block per operation
        assert 'class="swagger-ui' in dom and 'class="info' in dom
        assert "/v1/info" in dom and dom.count("opblock-summary-path") > 10
        assert "Failed to load API definition" not in dom and "Unable to render" not in dom
    else:  # ReDoc rendered the API's operations in its menu
        assert "redoc-wrap" in dom or 'class="menu-content' in dom or "api-content" in dom, dom[:2000]
        assert "/v1/info" in dom


def test_docs_assets_do_not_need_the_network_to_be_found(api: ApiServer) -> None:
    """The assets come from the installed package, so they are there before any request is made."""
    import fastapi_offline

    static = Path(fastapi_offline.__file__).parent / "static"
    served = {Path(u).name for u in _referenced(api.get("/docs").text) + _referenced(api.get("/redoc").text)}
    served.discard("openapi.json")
    assert served and all((static / name).is_file() for name in served), served
    assert httpx.get(api.base_url + "/docs", timeout=10).status_code == 200
