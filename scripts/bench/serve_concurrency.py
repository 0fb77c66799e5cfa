#!/usr/bin/env python3
"""Total answer tokens/s of `linvt serve` at 1, 4 and 8 concurrent clients (README "Serving").

Starts one server per client count (`--parallel` = the client count, at most 8), sends each
client the same image question a few times (greedy, a fixed number of new tokens: the answer
cannot stop early because `ignore_eos`-style stopping is not used; a stop id may end one early,
which the report shows), and reports completion tokens / wall time, and the decode part alone
from the server's /metrics (decode-step seconds). Standard library only.

    python3 scripts/bench/serve_concurrency.py --model DIR --image PNG [--backend cpu]
        [--clients 1,4,8] [--requests 2] [--max-tokens 64] [--max-tiles 1] [--bin target/release/linvt]
"""

import argparse
import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(port, proc, timeout=1800):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not come up")


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-tiles", type=int, default=1, help="image tiles (InternVL hosts)")
    ap.add_argument("--bin", default="target/release/linvt")
    ap.add_argument("--extra", default="", help="more `linvt serve` flags")
    a = ap.parse_args()
    with open(a.image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    rows = []
    for clients in [int(c) for c in a.clients.split(",")]:
        port = free_port()
        cmd = [a.bin, "serve", "--model", a.model, "--backend", a.backend, "--port", str(port),
               "--parallel", str(min(clients, 8)), "--served-model-name", "m"] + a.extra.split()
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, proc)
            body = {
                "model": "m", "temperature": 0, "max_tokens": a.max_tokens, "max_tiles": a.max_tiles,
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "Describe the picture in detail."}]}],
            }
            data = json.dumps(body).encode()
            tokens, errors = [], []

            def client():
                for _ in range(a.requests):
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{port}/v1/chat/completions", data=data,
                        headers={"content-type": "application/json"})
                    try:
                        with urllib.request.urlopen(req, timeout=3600) as r:
                            tokens.append(json.load(r)["usage"]["completion_tokens"])
                    except Exception as e:  # noqa: BLE001 - reported below
                        errors.append(str(e))

            decode0 = metric(port, 'linvt_stage_seconds_total{stage="decode"}')
            t0 = time.time()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.time() - t0
            decode = metric(port, 'linvt_stage_seconds_total{stage="decode"}') - decode0
            # Decode steps make every token but each question's first (its prefill's).
            decoded = sum(tokens) - len(tokens)
            row = {
                "clients": clients, "requests": len(tokens), "errors": len(errors),
                "completion_tokens": sum(tokens), "wall_s": round(wall, 2),
                "tokens_per_s": round(sum(tokens) / wall, 2),
                "decode_s": round(decode, 2),
                "decode_tokens_per_s": round(decoded / decode, 2) if decode > 0 else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if errors:
                print("errors:", errors[:3], file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    base = rows[0]["decode_tokens_per_s"] or 1
    for r in rows:
        print(f"{r['clients']} client(s): {r['tokens_per_s']} tokens/s overall, "
              f"{r['decode_tokens_per_s']} tokens/s in decode steps "
              f"({(r['decode_tokens_per_s'] or 0) / base:.2f}× one client)")


if __name__ == "__main__":
    main()
