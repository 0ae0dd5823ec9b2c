"""The web dashboard: ``GET /dashboard`` and its files under ``/dashboard/static/``.

The page is static HTML, CSS and JavaScript modules (``static/``), with no build
step. It signs in through the host's login route (``sign_in_path``, which
answers ``{"access_token", "expires_in", "user": {"display_name", "role"}}``),
keeps the token in the tab's ``sessionStorage``, reads the admin metrics and
alert APIs with it, and follows the live hub (``/hubs/metrics``, token in the
query string) for everything that changes.

Charts are drawn by uPlot, installed from the npm registry by ``make`` (``npm
ci`` with the committed ``package-lock.json``) and copied into
``static/vendor/``, which git ignores: no third-party code is committed and
nothing is fetched from a CDN, so the page works with no Internet access. When
the library is missing the page still shows every figure, says in place of the
charts how to install it, and the service logs ``dashboard_charts_unavailable``
once at start.

The HTML answers with a strict Content-Security-Policy (scripts, styles and
connections from this origin only) and is never framed. Files are served from a
list made when the routes are built, so no request path reaches the file
system; each has an ETag and is revalidated (``Cache-Control: no-cache``).
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from digitalme.monitoring.dashboard.hub_routes import EVENTS_PATH, HUB_PATH
from digitalme.monitoring.named_route import NamedRoute

__all__ = ["CHARTS_FILE", "PAGE_PATH", "STATIC_DIR", "page_routes"]

log = structlog.get_logger("digitalme.monitoring.dashboard")

PAGE_PATH = "/dashboard"
STATIC_PATH = "/dashboard/static"
STATIC_DIR = Path(__file__).with_name("static")
CHARTS_FILE = "vendor/uPlot.iife.min.js"
"""The charting library, relative to :data:`STATIC_DIR` (see the module docstring)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_TEXT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    content: bytes
    media_type: str
    etag: str

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        content = path.read_bytes()
        media_type = _TEXT_TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        if media_type.startswith("text/"):
            media_type += "; charset=utf-8"
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        return cls(content, media_type, etag)


def _static_files(directory: Path) -> dict[str, StaticFile]:
    """Every file under ``directory`` but the page template and dotfiles, by relative path."""
    return {
        path.relative_to(directory).as_posix(): StaticFile.read(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "index.html" and not path.name.startswith(".")
    }


def render_page(template: str, *, sign_in_path: str, snapshot_interval: float) -> str:
    """The page with its configuration in ``data-`` attributes of ``<body>``."""
    attributes = {
        "sign-in": sign_in_path,
        "hub": HUB_PATH,
        "events": EVENTS_PATH,
        "static": STATIC_PATH,
        "snapshot-interval": f"{snapshot_interval:g}",
    }
    data = " ".join(f'data-{key}="{html.escape(value)}"' for key, value in attributes.items())
    return template.replace("<body>", f"<body {data}>", 1)


def page_routes(
    *, sign_in_path: str, snapshot_interval: float, directory: Path = STATIC_DIR
) -> list[BaseRoute]:
    """``/dashboard`` and ``/dashboard/static/{path}`` over the files in ``directory``."""
    page = render_page(
        (directory / "index.html").read_text(encoding="utf-8"),
        sign_in_path=sign_in_path,
        snapshot_interval=snapshot_interval,
    ).encode()
    files = _static_files(directory)
    if CHARTS_FILE not in files:
        log.warning(
            "dashboard_charts_unavailable",
            missing=str(directory / CHARTS_FILE),
            fix="run `make vendor` (npm ci), or `make run`, which does it",
        )

    async def dashboard(_: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def static(request: Request) -> Response:
        found = files.get(request.path_params["path"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = {
            "ETag": found.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.content, media_type=found.media_type, headers=headers)

    return [
        NamedRoute(PAGE_PATH, dashboard, methods=["GET"], include_in_schema=False),
        NamedRoute(STATIC_PATH + "/{path:path}", static, methods=["GET"], include_in_schema=False),
    ]
