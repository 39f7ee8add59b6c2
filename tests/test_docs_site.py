"""The built documentation site in a real browser: the home page, one API page and one notebook
page, served on localhost and loaded in headless Chromium (Debian's `chromium` package).

Each page must render (its title and heading), load every image (`naturalWidth > 0`), typeset
its math (MathJax, with no TeX error), log no console error or uncaught exception, and load
nothing from outside the site (every request goes to the local server or is a `data:` URI).

The site is built first (`mkdocs build --strict`), after the notebook tests saved the executed
notebooks, so this file runs apart from the rest of the suite: the README's test command runs
it last, with `JAXDIFF_DOCS_SITE=site` naming the built site. Without that variable the tests
skip; with it, a missing Chromium skips them locally and fails them in CI (`CI` set), where
`.ci/run` installs it. Chromium is driven through the DevTools protocol over a pipe
(`--remote-debugging-pipe`: JSON messages ending in a NUL byte on file descriptors 3 and 4), so
no driver or client package is needed. `JAXDIFF_DOCS_SCREENSHOTS=DIR` saves a screenshot of
each page there.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import http.server
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

SITE = os.environ.get("JAXDIFF_DOCS_SITE")
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    # no name resolves but the local server's address: a page that asks for an outside URL
    # fails the test without any traffic leaving the machine
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,1000",
    "--remote-debugging-pipe",
)
PAGE_TIMEOUT_S = 60

pytestmark = pytest.mark.skipif(
    not SITE,
    reason="set JAXDIFF_DOCS_SITE to a built site (the README's test command builds it with "
    "`mkdocs build --strict` and runs this file with JAXDIFF_DOCS_SITE=site)",
)


def chromium() -> str:
    """Chromium's path; a missing one skips the test, or fails it in CI."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = "chromium not installed (apt-get install chromium; .ci/run installs it in CI)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class DevTools:
    """A minimal client of Chromium's DevTools protocol over `--remote-debugging-pipe`."""

    def __init__(self, executable: str, user_data_dir: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser reads commands on fd 3 and writes replies and events on fd 4; the
        # child's ends move above 9 first, so that redirecting one to 3 or 4 cannot clobber
        # the other (os.pipe may return 3 and 4 themselves)
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))
        shell = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                shell,
                "bash",
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={user_data_dir}",
                "about:blank",
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self):
        for line in self.process.stderr:
            self.stderr_lines.append(line.decode(errors="replace").rstrip())

    def _read(self):
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    _closed = False

    def send(
        self,
        method: str,
        params: dict | None = None,
        *,
        session: str | None = None,
        timeout: float = PAGE_TIMEOUT_S,
    ) -> dict:
        """Sends a command and returns its result; a protocol error raises."""
        msg_id = next(self._ids)
        message = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    tail = "\n".join(self.stderr_lines[-20:])
                    raise TimeoutError(f"no reply to {method} (browser stderr:\n{tail})")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method: str, session: str, start: int, timeout: float) -> dict:
        """The first event `method` of `session` after `self.events[start]`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if event["method"] == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"no {method} within {timeout} s")
                self._cond.wait(left)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)


@contextlib.contextmanager
def serve(directory: Path):
    """`directory` served by a `http.server` on 127.0.0.1 in a thread; yields its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site_url():
    """The built site, served on localhost."""
    site = Path(SITE)
    if not site.is_absolute():
        site = ROOT / site
    assert (site / "index.html").is_file(), f"{site} holds no built site (mkdocs build)"
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    devtools = DevTools(chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield devtools
    devtools.close()


# what a page reports once loaded: title, first heading, images, math
PAGE_STATE = """
(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const h1 = document.querySelector("article h1, .md-content h1");
  return {
    title: document.title,
    h1: h1 ? h1.textContent.trim() : null,
    images: images.map((img) => ({src: img.currentSrc.slice(0, 100),
                                  width: img.naturalWidth})),
    math: document.querySelectorAll("mjx-container").length,
    mathErrors: Array.from(document.querySelectorAll("mjx-merror"))
      .map((e) => e.textContent).slice(0, 5),
    text: document.body.innerText,
    // each documented object's rendered text (mkdocstrings: div.doc-object > heading + body)
    sections: Object.fromEntries(
      Array.from(document.querySelectorAll(".doc-object > .doc-heading[id]"))
        .map((h) => [h.id, h.parentElement.innerText])),
  };
})()
"""


def load(browser: DevTools, base: str, path: str) -> dict:
    """Loads `base + path` in a new tab; returns its state and what went wrong on the way:
    console errors, uncaught exceptions, failed or external requests."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    start = len(browser.events)
    browser.send("Page.navigate", {"url": base + path}, session=session)
    browser.wait_event("Page.loadEventFired", session, start, PAGE_TIMEOUT_S)
    state = browser.send(
        "Runtime.evaluate",
        {"expression": PAGE_STATE, "awaitPromise": True, "returnByValue": True},
        session=session,
    )
    assert "exceptionDetails" not in state, state
    state = state["result"]["value"]
    time.sleep(0.5)  # late console messages and requests
    problems = []
    for event in browser.events[start:]:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event["params"]
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            problems.append(f"console.{params['type']}: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"uncaught: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not (url.startswith(base) or url.startswith(("data:", "blob:", "about:"))):
                problems.append(f"external request: {url}")
        elif method == "Network.loadingFailed":
            problems.append(f"failed request: {params.get('errorText')}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
    shots = os.environ.get("JAXDIFF_DOCS_SCREENSHOTS")
    if shots:
        png = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        name = re.sub(r"\W+", "_", path.strip("/")) or "index"
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / f"{name}.png").write_bytes(base64.b64decode(png["data"]))
    browser.send("Target.closeTarget", {"targetId": target})
    state["problems"] = problems
    return state


def check_page(state: dict, *, heading: str, min_images: int, min_math: int):
    assert not state["problems"], state["problems"]
    assert "jaxdiff" in state["title"], state["title"]
    assert state["h1"] and heading in state["h1"], state["h1"]
    broken = [img for img in state["images"] if img["width"] == 0]
    assert not broken, f"images that did not load: {broken}"
    assert len(state["images"]) >= min_images, state["images"]
    assert state["math"] >= min_math, f"{state['math']} typeset formulas"
    assert not state["mathErrors"], state["mathErrors"]


def test_home_page(browser, site_url):
    state = load(browser, site_url, "")
    check_page(state, heading="jaxdiff", min_images=1, min_math=0)
    assert "pip install" in state["text"]


def test_api_page_samplers(browser, site_url):
    """The samplers' page: every sampler with its paper, order and NFE per step, and its math."""
    import jaxdiff.samplers as samplers

    state = load(browser, site_url, "api/samplers/")
    check_page(state, heading="Samplers", min_images=0, min_math=5)
    classes = [
        n
        for n in samplers.__all__
        if isinstance(getattr(samplers, n), type)
        and issubclass(getattr(samplers, n), samplers.AbstractSampler)
        and getattr(samplers, n) is not samplers.AbstractSampler
    ]
    sections = state["sections"]
    missing = [n for n in classes if f"jaxdiff.samplers.{n}" not in sections]
    assert not missing, f"samplers without a section: {missing}"
    for name in classes:
        text = sections[f"jaxdiff.samplers.{name}"]
        assert re.search(r"\b(19|20)\d\d\b", text), f"{name}: no paper on the page"
        assert re.search(r"\border\b", text, flags=re.IGNORECASE), f"{name}: no order"
        assert re.search(r"NFE|evaluations?\s+per\s+step", text), f"{name}: no NFE"


def test_notebook_page(browser, site_url):
    """A notebook with its plots (the executed copy the notebook tests saved) and its math."""
    state = load(browser, site_url, "notebooks/07_edm_design_space/")
    check_page(state, heading="EDM", min_images=3, min_math=10)


BROKEN_PAGE = """<!doctype html><html><head><title>jaxdiff broken</title></head><body>
<h1>broken</h1><img src="missing.png"><img src="https://example.invalid/logo.png">
<script>console.error("boom");</script></body></html>"""


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The checks can fail: a missing image, an outside URL and a console error are each
    reported (the outside name resolves nowhere: --host-resolver-rules)."""
    (tmp_path / "index.html").write_text(BROKEN_PAGE)
    with serve(tmp_path) as url:
        state = load(browser, url, "")
    problems = "\n".join(state["problems"])
    assert "external request: https://example.invalid/logo.png" in problems
    assert "HTTP 404" in problems and "missing.png" in problems
    assert "console.error" in problems and "boom" in problems
    assert [img["width"] for img in state["images"]] == [0, 0]
    with pytest.raises(AssertionError):
        check_page(state, heading="broken", min_images=0, min_math=0)


def test_no_page_asks_for_an_outside_resource():
    """Every built page, not only the three loaded above: no script, stylesheet, image or
    frame from outside the site (links to other sites are fine: they load nothing)."""
    site = Path(SITE) if Path(SITE).is_absolute() else ROOT / SITE
    outside = re.compile(
        r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']?(?:https?:)?//"
        r"|<link\b[^>]*\brel=[\"']?(?:stylesheet|preload|modulepreload|icon)[^>]*"
        r"\bhref=[\"']?(?:https?:)?//"
        r"|@import\s+(?:url\()?[\"']?(?:https?:)?//",
        flags=re.IGNORECASE,
    )
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    offenders = [
        f"{page.relative_to(site)}: {match.group(0)[:120]}"
        for page in pages
        for match in [outside.search(page.read_text(encoding="utf-8"))]
        if match
    ]
    assert not offenders, offenders
