#!/usr/bin/env python3
"""Headless check of the demo page: drives Chromium through chromedriver (plain WebDriver HTTP,
no packages needed), waits until the page reports "ok" (or an error) in its title, saves a
screenshot and prints what the page shows.

    python3 web/check_demo.py http://127.0.0.1:8000/ target/web-demo.png
"""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 300  # SwiftShader compiles every pipeline on first use: minutes on a busy CPU


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r).get("value")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"chromedriver {method} {path}: {e.read().decode(errors='replace')}") from e


def main():
    url, shot = sys.argv[1], sys.argv[2]
    with open(os.path.join(HERE, "..", "linvt-web", "webdriver.json")) as f:
        chrome = json.load(f)["goog:chromeOptions"]  # the browser tests' binary and flags
    # As wasm-bindgen-test-runner does: headless, and no sandbox (CI containers run as root).
    chrome["args"] = chrome["args"] + ["--headless=new", "--no-sandbox", "--window-size=1100,1000"]
    port = free_port()
    driver = subprocess.Popen([os.environ.get("CHROMEDRIVER", "chromedriver"), f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if call(base, "GET", "/status").get("ready"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": chrome}}}
        session = call(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{session}"
        try:
            call(base, "POST", s + "/url", {"url": url})
            deadline = time.time() + TIMEOUT_S
            title = ""
            while time.time() < deadline:
                title = call(base, "GET", s + "/title")
                if title == "ok" or title.startswith("error"):
                    break
                time.sleep(0.5)
            png = base64.b64decode(call(base, "GET", s + "/screenshot"))
            os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
            with open(shot, "wb") as f:
                f.write(png)
            text = call(base, "POST", s + "/execute/sync",
                        {"script": "return document.body.innerText", "args": []})
            median = call(base, "POST", s + "/execute/sync",
                          {"script": "return document.getElementById('timings').dataset.smallMedianMs ?? null",
                           "args": []})
        finally:
            call(base, "DELETE", s)
    finally:
        driver.terminate()
        driver.wait(timeout=10)
    print(text)
    print(f"screenshot: {shot} ({len(png)} bytes)")
    if median is not None:
        print(f"browser condense time, `small` bench shape (median): {median} ms")
    if title != "ok":
        print(f"demo page did not report success; title: {title!r}", file=sys.stderr)
        return 1
    print("demo page reported ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
