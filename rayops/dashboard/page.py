"""The dashboard page: its static files, the login that sets Ray's cookie, and `?token=` links.

The page is static HTML, CSS and ES modules shipped in the wheel (`rayops/dashboard/static/`,
read with `importlib.resources`); there is no build step and nothing is fetched from outside.

*What is served without the token.* The page's shell (``GET /``, ``GET /static/<file>``) and
the login/logout routes: the shell holds no cluster data (every figure it shows comes from a
token-checked ``/api/...`` route), and a browser without the cookie must get the login form
from somewhere. Every data route stays behind the token check (``auth.py``).

*Login.* ``POST /api/dashboard/login`` with ``{"token": ...}`` checks the token (a wrong one
is counted and logged as any refusal) and sets Ray's ``ray-authentication-token`` cookie:
HttpOnly (page scripts cannot read it), SameSite=Strict (another site's page cannot send it,
so it cannot submit jobs through the browser), Path=/. It is not ``Secure``: the server speaks
plain HTTP on loopback (reach it through an SSH tunnel). ``GET /?token=<token>`` does the
same for a link an operator is handed once, then redirects to ``/`` (303), so the token
leaves the address bar and the history; a wrong one redirects to ``/?login=failed``.
``POST /api/dashboard/logout`` clears the cookie.
"""

from __future__ import annotations

import json
from importlib import resources

from aiohttp import web

from rayops.dashboard.auth import AUTH_COOKIE, HttpTokenCheck

__all__ = ["LOGIN_PATH", "LOGOUT_PATH", "DashboardPage", "is_public"]

LOGIN_PATH = "/api/dashboard/login"
LOGOUT_PATH = "/api/dashboard/logout"
_STATIC_PREFIX = "/static/"
_LOGIN_MAX_BYTES = 4096
_PUBLIC = frozenset({"/", LOGIN_PATH, LOGOUT_PATH})
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
# The page loads only its own files and talks only to this server (websockets included).
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """Is `path` served without the token? Only the page's shell and the login routes."""
    return path in _PUBLIC or path.startswith(_STATIC_PREFIX)


def _load_static() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("rayops.dashboard") / "static"
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and suffix in _TYPES:
            files[name] = (entry.read_bytes(), _TYPES[suffix])
    if "index.html" not in files:
        raise FileNotFoundError("rayops/dashboard/static/index.html is missing from the install")
    return files


class DashboardPage:
    """Serves the page's files (read once from the package) and the login routes."""

    def __init__(self, check: HttpTokenCheck) -> None:
        self._check = check
        self._files = _load_static()

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._index)
        router.add_get(_STATIC_PREFIX + "{name}", self._static)
        router.add_post(LOGIN_PATH, self._login)
        router.add_post(LOGOUT_PATH, self._logout)

    def _file(self, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise web.HTTPNotFound(reason=f"no page file {name!r}")
        body, content_type = found
        return web.Response(body=body, content_type=content_type, headers=_SECURITY_HEADERS)

    def _token_ok(self, token: str, request: web.Request) -> bool:
        return self._check.allows(
            {"Authorization": f"Bearer {token}"}, {}, str(request.remote), request.path
        )

    @staticmethod
    def _set_cookie(resp: web.StreamResponse, token: str) -> None:
        resp.set_cookie(AUTH_COOKIE, token, path="/", httponly=True, samesite="Strict")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:
            if self._token_ok(request.query["token"], request):
                resp = web.HTTPSeeOther("/", headers={"Referrer-Policy": "no-referrer"})
                self._set_cookie(resp, request.query["token"])
            else:
                resp = web.HTTPSeeOther(
                    "/?login=failed", headers={"Referrer-Policy": "no-referrer"}
                )
            return resp
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    async def _login(self, request: web.Request) -> web.Response:
        # Anyone may call this route: read no more than a token's worth of body.
        if request.content_length is None or request.content_length > _LOGIN_MAX_BYTES:
            return web.json_response(
                {"error": f"send the token as a JSON body of at most {_LOGIN_MAX_BYTES} bytes"},
                status=400,
            )
        try:
            body = await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return web.json_response(
                {"error": "'token' must be the cluster token as a non-empty string"}, status=400
            )
        if not self._token_ok(token, request):
            return web.json_response({"error": "wrong cluster token"}, status=403)
        resp = web.json_response({"ok": True})
        self._set_cookie(resp, token)
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        resp = web.json_response({"ok": True})
        resp.del_cookie(AUTH_COOKIE, path="/")
        return resp
