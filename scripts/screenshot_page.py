"""Screenshot a page of the local Dagster UI with headless Chromium over the DevTools protocol.

Usage: python scripts/screenshot_page.py URL OUT.png [--click TEXT ...] [--icon NAME[:TIMES] ...]
Buttons named by --click (e.g. the first-visit "Skip" dialog) are pressed, then the icons named by --icon
(e.g. "unfold_more" for every group toggle of the asset graph, "zoom_out:2"), then the page is dragged
--pan pixels to the left, before the picture is taken.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

DEBUG_PORT = 9229
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--hide-scrollbars", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class DevTools:
    def __init__(self, websocket_url: str):
        self.socket = connect(websocket_url, max_size=64 * 1024 * 1024).__enter__()
        self.ids = itertools.count(1)

    def call(self, method: str, **params: object) -> dict:
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self.socket.recv())
            if answer.get("id") == message_id:
                return answer.get("result", {})

    def click_button(self, text: str) -> bool:
        script = (
            "(() => { const b = [...document.querySelectorAll('button')]"
            f".find(e => e.textContent.trim() === {json.dumps(text)}); if (b) b.click(); return !!b; }})()"
        )
        return self.call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"]

    def click_icons(self, name: str, times: int | None = None) -> None:
        """Click the first such icon `times` times, or until none is left (each click re-renders)."""
        script = (
            f"(() => {{ const icon = document.querySelector('[aria-label={name}]'); if (!icon) return false;"
            " (icon.closest('button,[role=button]') || icon.parentElement)"
            ".dispatchEvent(new MouseEvent('click', {bubbles: true})); return true; })()"
        )
        for _ in range(times or 20):
            if not self.call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["value"]:
                return
            time.sleep(1.5)

    def drag(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Press, move and release the left mouse button: pans a graph view."""
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=start[0], y=start[1], button="left", clickCount=1)
        for step in range(1, 11):
            x = start[0] + (end[0] - start[0]) * step // 10
            y = start[1] + (end[1] - start[1]) * step // 10
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=end[0], y=end[1], button="left", clickCount=1)


def page_websocket(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as answer:
                pages = [p for p in json.load(answer) if p["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("Chromium's DevTools endpoint did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--click", action="append", default=[])
    parser.add_argument("--icon", action="append", default=[], help="NAME (until gone) or NAME:TIMES")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--pan", type=int, default=0, help="drag the page this many pixels to the left")
    parser.add_argument("--settle-seconds", type=float, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # Chromium helpers linger
        browser = subprocess.Popen(
            ["chromium", *CHROMIUM_FLAGS, f"--remote-debugging-port={DEBUG_PORT}", f"--user-data-dir={profile}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            tools = DevTools(page_websocket(DEBUG_PORT, time.monotonic() + 30))
            tools.call(
                "Emulation.setDeviceMetricsOverride", width=args.width, height=900, deviceScaleFactor=1, mobile=False
            )
            tools.call("Page.navigate", url=args.url)
            time.sleep(args.settle_seconds)
            for text in args.click:
                tools.click_button(text)
                time.sleep(2)
            for icon in args.icon:
                name, _, times = icon.partition(":")
                tools.click_icons(name, int(times) if times else None)
            if args.pan:
                tools.drag((args.width * 3 // 4, 250), (args.width * 3 // 4 - args.pan, 250))
            time.sleep(2)
            shot = tools.call("Page.captureScreenshot", format="png")
            args.out.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait(timeout=30)


if __name__ == "__main__":
    main()
