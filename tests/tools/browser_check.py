#!/usr/bin/env python3
"""Drives the status page in headless Chromium over the DevTools protocol, as a user
would: loads `/` (with HTTP Basic credentials), waits for the stream table, clicks
"watch" on a stream, checks that the video plays live (currentTime advances), then
clicks on the archive timeline and checks that the archive plays.

Prints one JSON object on stdout with what it saw; the Rust test
(tests/tests/status_page_e2e.rs) asserts on it. Exits 2 when a step times out, with
the JSON of what it saw so far. `--check` only says whether the tools are here.

`--matrix PAGE_URL URL...`: the player matrix (tests/tests/player_matrix_e2e.rs):
on the status page (no credentials), plays each URL in turn with the page's own
hls.js player and prints `{URL: {"advanced": S, "error": TEXT}}`, where S is how far
the video's time moved (at least 2 s, or what it reached in 20 s).

`--watch PAGE_URL URL SECONDS [SEEK]`: plays URL for SECONDS (after seeking to SEEK
seconds) and prints `{"samples": [currentTime every 0.5 s], "error": TEXT}`
(tests/tests/timeline_e2e.rs: hls.js through an origin restart).

Needs: chromium, python3-websocket (websocket-client).
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def usable():
    try:
        import websocket  # noqa: F401
    except ImportError:
        return False
    return shutil.which("chromium") is not None


class Page:
    """One page target over a DevTools websocket."""

    def __init__(self, ws_url):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.console = []

    def send(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.event(msg)

    def event(self, msg):
        m = msg.get("method")
        p = msg.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.console.append(f"{p['type']}: {text}"[:300])
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}"[:300])

    def eval(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def click(self, x, y):
        for t in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=t, x=x, y=y, button="left", clickCount=1)


def wait(page, what, expr, timeout, seen):
    """Polls `expr` until it is truthy; records the last value under `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = page.eval(expr)
        seen[what] = v
        if v:
            return v
        time.sleep(0.25)
    seen["timed_out"] = what
    seen["console"] = page.console
    print(json.dumps(seen))
    print(f"timed out waiting for {what}: {json.dumps(seen)}", file=sys.stderr)
    sys.exit(2)


def advancing(page, what, seconds, timeout, seen):
    """Waits until the video plays and its currentTime moves `seconds` on."""
    first = wait(page, f"{what}_started", "document.getElementById('video').currentTime", timeout, seen)
    wait(
        page,
        f"{what}_advanced",
        f"document.getElementById('video').currentTime - {first} >= {seconds}",
        timeout,
        seen,
    )
    seen[f"{what}_time"] = [first, page.eval("document.getElementById('video').currentTime")]


def matrix(page, urls):
    """Each URL played in the status page's player; how far the video's time moved."""
    results = {}
    for url in urls:
        page.eval(f"document.getElementById('state').textContent = ''; attach({json.dumps(url)})")
        first = None
        moved = 0.0
        end = time.monotonic() + 20
        while time.monotonic() < end:
            t = page.eval("document.getElementById('video').currentTime")
            if t and first is None:
                first = t
            if first is not None:
                moved = t - first
                if moved >= 2:
                    break
            if page.eval("document.getElementById('state').textContent").startswith("error"):
                break
            time.sleep(0.2)
        error = page.eval("document.getElementById('state').textContent")
        results[url] = {"advanced": round(moved, 3), "error": error if error.startswith("error") else None}
    return results


def watch(page, url, seconds, seek):
    """Plays `url` in the status page's player for `seconds`; the video's time every
    half second (after seeking to `seek` once it can play), and the error if any."""
    page.eval(f"document.getElementById('state').textContent = ''; attach({json.dumps(url)})")
    if seek is not None:
        end = time.monotonic() + 20
        while time.monotonic() < end and not page.eval("document.getElementById('video').readyState >= 2"):
            time.sleep(0.2)
        page.eval(f"document.getElementById('video').currentTime = {seek}")
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(page.eval("document.getElementById('video').currentTime"))
        time.sleep(0.5)
    error = page.eval("document.getElementById('state').textContent")
    return {"samples": samples, "error": error if error.startswith("error") else None}


def launch():
    """Chromium with a fresh profile; (process, profile dir, page)."""
    profile = tempfile.mkdtemp(prefix="tern-chromium-")
    args = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--mute-audio", "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1200", "--remote-debugging-port=0", "--remote-allow-origins=*",
        f"--user-data-dir={profile}", "about:blank",
    ]
    browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    end = time.monotonic() + 30
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        if time.monotonic() > end or browser.poll() is not None:
            browser.kill()
            print("chromium did not start (no DevToolsActivePort)", file=sys.stderr)
            sys.exit(2)
        time.sleep(0.1)
    port = open(port_file).read().split()[0]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
    target = next(t for t in targets if t.get("type") == "page")
    page = Page(target["webSocketDebuggerUrl"])
    page.send("Runtime.enable")
    page.send("Network.enable")
    page.send("Page.enable")
    return browser, profile, page


def main():
    if "--check" in sys.argv:
        sys.exit(0 if usable() else 1)
    browser, profile, page = launch()
    seen = {}
    try:
        if sys.argv[1] == "--watch":
            page.send("Page.navigate", url=sys.argv[2])
            wait(page, "page", "typeof attach === 'function' && typeof Hls === 'function'", 20, seen)
            seek = float(sys.argv[5]) if len(sys.argv) > 5 else None
            print(json.dumps(watch(page, sys.argv[3], float(sys.argv[4]), seek)))
            return
        if sys.argv[1] == "--matrix":
            page.send("Page.navigate", url=sys.argv[2])
            wait(page, "page", "typeof attach === 'function' && typeof Hls === 'function'", 20, seen)
            print(json.dumps(matrix(page, sys.argv[3:])))
            return
        url, stream, auth = sys.argv[1], sys.argv[2], sys.argv[3]
        token = base64.b64encode(auth.encode()).decode()
        page.send("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
        page.send("Page.navigate", url=url)

        seen["mse_h264"] = wait(
            page, "mse_h264",
            "typeof MediaSource !== 'undefined' && "
            "MediaSource.isTypeSupported('video/mp4; codecs=\"avc1.42c01e,mp4a.40.2\"')",
            20, seen)
        seen["hls_js"] = wait(page, "hls_js", "typeof Hls === 'function' && Hls.isSupported()", 20, seen)
        seen["rows"] = wait(
            page, "rows",
            "Array.from(document.querySelectorAll('#streams tbody tr[data-name]'))"
            ".map(r => r.dataset.name)",
            20, seen)
        # Watch live: a user's click on the stream's button.
        box = wait(
            page, "watch_button",
            f"(() => {{ const b = document.querySelector('button[data-play=\"{stream}\"]');"
            " if (!b) return null; const r = b.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()",
            20, seen)
        page.click(box["x"], box["y"])
        seen["live_state"] = wait(page, "live_state", "document.getElementById('state').textContent", 10, seen)
        seen["live_url"] = page.eval("document.getElementById('state').dataset.url")
        advancing(page, "live", 3, 30, seen)
        # Scrub the archive: a click at a fifth of the timeline.
        wait(page, "timeline_ranges", "document.querySelectorAll('#timeline .range').length", 20, seen)
        box = page.eval(
            "(() => { const t = document.getElementById('timeline');"
            " t.scrollIntoView(); const r = t.getBoundingClientRect();"
            " return {x: r.x + r.width * 0.2, y: r.y + r.height / 2}; })()")
        page.click(box["x"], box["y"])
        seen["archive_state"] = wait(
            page, "archive_state",
            "(() => { const s = document.getElementById('state').textContent;"
            " return s.startsWith('playing archive') ? s : null; })()",
            10, seen)
        seen["archive_url"] = page.eval("document.getElementById('state').dataset.url")
        advancing(page, "archive", 3, 30, seen)
        seen["console"] = page.console
        print(json.dumps(seen))
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
