"""Headless Chromium driven over the Chrome DevTools Protocol, for the dashboard page's tests.

Debian's ``chromium`` package (``scripts/bootstrap-browser.sh`` installs it) runs headless with
``--remote-debugging-pipe``: the protocol travels over two pipes (the browser reads commands on
its fd 3 and writes answers on its fd 4, each message a JSON text ended by a NUL byte), so no
debugging port is opened that another local user could drive. The browser starts in its own
session with a throw-away profile directory; `close()` ends the whole process group and
removes the profile. Background networking (updates, safe browsing, sync, metrics) is off: the
browser talks only to the pages it is sent to.

    with Browser.launch() as browser:
        page = browser.new_page()
        page.navigate("http://127.0.0.1:8265/?token=...")
        page.wait_for("document.body.dataset.actorsRenderedMs")
        page.screenshot("/tmp/page.png")

Why not a library: Playwright and pyppeteer download a browser build of their own (not
possible here, and not Debian's), Selenium needs a chromedriver besides the browser; the few
commands a test needs (create a page, evaluate, click, screenshot) are a small client.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Any

__all__ = ["Browser", "BrowserError", "Page", "find_chromium"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-pings",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """The browser could not start, or a DevTools command failed or timed out."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _high_fd(fd: int) -> int:
    """`fd` moved to a number >= 10, so bash's ``3<&N 4>&M`` cannot clobber it (bash, not
    sh: dash takes one-digit fds only)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium process and its DevTools pipe (see the module doc)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        to_browser: int,
        from_browser: int,
        profile: str,
        timeout: float,
    ) -> None:
        self._proc = proc
        self._out = to_browser
        self._in = from_browser
        self._profile = profile
        self.timeout = timeout
        self._next_id = 0
        self._lock = threading.Lock()
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="cdp-reader", daemon=True)
        self._reader.start()

    @classmethod
    def launch(cls, *, width: int = 1400, height: int = 1000, timeout: float = 30.0) -> Browser:
        exe = find_chromium()
        if exe is None:
            raise BrowserError(
                "no Chromium on PATH: install Debian's 'chromium' package "
                "(bash scripts/bootstrap-browser.sh)"
            )
        profile = tempfile.mkdtemp(prefix="rayops-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, the browser reads them on fd 3
        ans_r, ans_w = os.pipe()  # the browser writes answers on fd 4, we read them
        cmd_r, ans_w = _high_fd(cmd_r), _high_fd(ans_w)
        args = [
            exe,
            *_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        try:
            proc = subprocess.Popen(
                [
                    "/bin/bash",
                    "-c",
                    f'exec "$@" 3<&{cmd_r} 4>&{ans_w} {cmd_r}<&- {ans_w}>&-',
                    "bash",
                    *args,
                ],
                pass_fds=(cmd_r, ans_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as err:
            for fd in (cmd_r, cmd_w, ans_r, ans_w):
                os.close(fd)
            shutil.rmtree(profile, ignore_errors=True)
            raise BrowserError(f"could not start {exe}: {err}") from err
        os.close(cmd_r)
        os.close(ans_w)
        browser = cls(proc, cmd_w, ans_r, profile, timeout)
        try:
            browser.send("Browser.getVersion")
        except BrowserError:
            browser.close()
            raise
        return browser

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ protocol
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                fut = self._pending.pop(msg["id"], None) if "id" in msg else None
                if fut is not None:
                    fut.set_result(msg)
        for fut in list(self._pending.values()):
            fut.set_exception(BrowserError("the browser closed its DevTools pipe"))
        self._pending.clear()

    def send(self, method: str, session_id: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its result (raises `BrowserError` on an
        error answer or after `timeout`)."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            fut: Future[dict[str, Any]] = Future()
            self._pending[mid] = fut
            msg: dict[str, Any] = {"id": mid, "method": method, "params": params}
            if session_id:
                msg["sessionId"] = session_id
            try:
                os.write(self._out, json.dumps(msg).encode() + b"\0")
            except OSError as err:
                self._pending.pop(mid, None)
                raise BrowserError(f"{method}: the browser is gone ({err})") from err
        try:
            answer = fut.result(timeout=self.timeout)
        except TimeoutError as err:
            self._pending.pop(mid, None)
            raise BrowserError(f"{method}: no answer within {self.timeout} s") from err
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        return page

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            try:
                self.send("Browser.close")
            except BrowserError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Renderer and helper processes share the browser's session: end any left.
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._proc.wait()
        os.close(self._out)
        self._reader.join(timeout=5)
        os.close(self._in)
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab, driven through its flattened DevTools session."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self.session_id = session_id

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self._browser.send(method, self.session_id, **params)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            details = r["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} raised in the page: {text}")
        return r.get("result", {}).get("value")

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Load `url` and wait until the document (after any redirect) has loaded."""
        r = self.send("Page.navigate", url=url)
        if r.get("errorText"):
            raise BrowserError(f"loading {url}: {r['errorText']}")
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            timeout=timeout,
            what=f"{url} to load",
        )

    def wait_for(self, expression: str, *, timeout: float = 15.0, what: str = "") -> Any:
        """Poll `expression` until it is truthy; return its value (raise after `timeout`)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = self.evaluate(expression)
            if last:
                return last
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"waited {timeout} s for {what or expression!r}; last value {last!r}"
                )
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the first match."""
        box = self.evaluate(
            f"""(() => {{
              const e = document.querySelector({json.dumps(selector)});
              if (!e) return null;
              e.scrollIntoView({{block: 'center'}});
              const r = e.getBoundingClientRect();
              return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if not box:
            raise BrowserError(f"nothing on the page matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )

    def screenshot(self, path: str, *, full_page: bool = True) -> str:
        """Save a PNG of the page (the whole page by default) to `path`; return `path`."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        return path
