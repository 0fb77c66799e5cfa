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


def drive(url, shot, reads, timeout_s=TIMEOUT_S, act=None):
    """Opens `url` headless, runs `act(webdriver)` if given (webdriver(method, path, body)
    calls the session's WebDriver endpoint `path`), waits until the title is "ok" or starts
    with "error", saves a screenshot to `shot` and returns (title, {name: value of the JS
    expression reads[name]})."""
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
            if act:
                act(lambda method, path, body=None: call(base, method, s + path, body))
            deadline = time.time() + timeout_s
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
            values = {name: call(base, "POST", s + "/execute/sync",
                                 {"script": "return " + js, "args": []})
                      for name, js in reads.items()}
        finally:
            call(base, "DELETE", s)
    finally:
        driver.terminate()
        driver.wait(timeout=10)
    print(f"screenshot: {shot} ({len(png)} bytes)")
    return title, values


def main():
    url, shot = sys.argv[1], sys.argv[2]
    title, v = drive(url, shot, {
        "text": "document.body.innerText",
        "median": "document.getElementById('timings').dataset.smallMedianMs ?? null",
    })
    print(v["text"])
    if v["median"] is not None:
        print(f"browser condense time, `small` bench shape (median): {v['median']} ms")
    if title != "ok":
        print(f"demo page did not report success; title: {title!r}", file=sys.stderr)
        return 1
    print("demo page reported ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
