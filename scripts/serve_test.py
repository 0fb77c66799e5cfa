#!/usr/bin/env python3
"""End-to-end tests of `linvt serve` (OpenAI-compatible HTTP server) and `linvt batch`.

Run through scripts/test-serve.sh (it makes the venv with the pinned `openai` package):

    python3 scripts/serve_test.py --bin target/debug/linvt [--model tests/fixtures/tiny-internvl2]

Standard library + the official `openai` SDK only. Every server is started on a free loopback
port and killed at the end; every HTTP call has a timeout. Each check prints `PASS name` or
`FAIL name: detail`; the exit status is 1 when any failed.

Expected answers come from `linvt ask --json` (greedy, the same input, question and token
budget), computed once; the server's temperature-0 answers must equal them exactly, alone and
under concurrent load (the CPU executor decodes batched sequences bit-identically).
"""

import argparse
import base64
import functools
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import openai
from openai import OpenAI

# Loopback only: no proxy may get in the way (the SDK's httpx, urllib and the server's reqwest
# all read these variables).
for _v in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

ARGS = None
WORK = None  # temp dir: logs, outputs
MEDIA = None  # the allowed media dir
OUTSIDE = None  # a dir outside it
NAME = None  # served model name
SERVERS = []
RESULTS = []  # (name, ok, detail)
LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Reporting


def check(name, ok, detail=""):
    with LOCK:
        RESULTS.append((name, bool(ok), detail))
        if ok:
            print(f"PASS {name}", flush=True)
        else:
            print(f"FAIL {name}: {detail}", flush=True)
    return bool(ok)


def info(msg):
    print(f"     {msg}", flush=True)


def section(title):
    print(f"== {title}", flush=True)


def short(x, n=300):
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + f"… ({len(s)} chars)"


def guarded(name):
    """Runs a test group; an exception in it is one FAIL, not the end of the run."""

    def wrap(f):
        @functools.wraps(f)
        def run(*a, **kw):
            try:
                return f(*a, **kw)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                check(f"{name} (no exception)", False, f"{type(e).__name__}: {e}")

        return run

    return wrap


# ---------------------------------------------------------------------------------------------
# Processes and HTTP


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, label, extra=(), allowed_media=True):
        self.label = label
        self.extra = list(extra)
        self.allowed_media = allowed_media
        self.proc = None
        self.port = None
        self.log_path = os.path.join(WORK, f"server-{label}.log")

    def start(self, timeout=120):
        self.port = free_port()
        cmd = [ARGS.bin, "serve", "--model", ARGS.model, "--backend", "cpu",
               "--host", "127.0.0.1", "--port", str(self.port)]
        if self.allowed_media:
            cmd += ["--allowed-media-dir", MEDIA]
        cmd += self.extra
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=WORK,
                                     stdin=subprocess.DEVNULL)
        SERVERS.append(self)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.label} exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                st, _, body = request(self.port, "GET", "/health", timeout=2)
                if st == 200 and json.loads(body).get("status") == "ok":
                    info(f"server {self.label} up on port {self.port} in {time.time() - t0:.1f} s "
                         f"({' '.join(self.extra)})")
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server {self.label} did not answer /health within {timeout} s")

    def log_tail(self, n=2000):
        try:
            with open(self.log_path) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def base(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def request(port, method, path, body=None, headers=None, timeout=60):
    """(status, lower-cased headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {}
        if body is not None:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) before reading a large body
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def chat(port, body, headers=None, timeout=60):
    """A non-streaming chat request: (status, headers, parsed JSON or raw text)."""
    st, h, data = request(port, "POST", "/v1/chat/completions", body, headers, timeout)
    try:
        return st, h, json.loads(data)
    except ValueError:
        return st, h, data.decode(errors="replace")


def stream(port, body, headers=None, timeout=60, on_event=None):
    """A streaming chat request over SSE: (status, headers, events or error JSON, saw [DONE])."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.status != 200:
            data = r.read()
            try:
                return r.status, hdrs, json.loads(data), False
            except ValueError:
                return r.status, hdrs, data.decode(errors="replace"), False
        events, done = [], False
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
                break
            events.append(json.loads(payload))
            if on_event:
                on_event(events)
        return 200, hdrs, events, done
    finally:
        conn.close()


def summarize(events):
    """(text, finish_reason, usage, first-chunk role, error object in the stream)."""
    text, finish, usage, role, error = [], None, None, None, None
    for i, e in enumerate(events):
        if "error" in e:
            error = e["error"]
            continue
        if e.get("usage"):
            usage = e["usage"]
        for c in e.get("choices", []):
            d = c.get("delta", {})
            if i == 0:
                role = d.get("role")
            if d.get("content"):
                text.append(d["content"])
            if c.get("finish_reason"):
                finish = c["finish_reason"]
    return "".join(text), finish, usage, role, error


def metrics(port, headers=None):
    st, _, data = request(port, "GET", "/metrics", headers=headers, timeout=10)
    if st != 200:
        raise RuntimeError(f"/metrics answered {st}")
    out = {}
    for line in data.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        out[k] = float(v)
    return out


def requests_total(m, outcome):
    return m.get(f'linvt_requests_total{{outcome="{outcome}"}}', 0.0)


def err_of(body):
    return body.get("error", {}) if isinstance(body, dict) else {}


def expect_error(name, got, status, etype=None, code=None, param=None):
    st, h, body = got[0], got[1], got[2]
    e = err_of(body)
    problems = []
    if st != status:
        problems.append(f"status {st} != {status}")
    if not e or not isinstance(e.get("message"), str) or not e.get("message"):
        problems.append("no error object with a message")
    if etype is not None and e.get("type") != etype:
        problems.append(f"type {e.get('type')!r} != {etype!r}")
    if code is not None and e.get("code") != code:
        problems.append(f"code {e.get('code')!r} != {code!r}")
    if param is not None and e.get("param") != param:
        problems.append(f"param {e.get('param')!r} != {param!r}")
    return check(name, not problems, "; ".join(problems) + f" — body {short(body)}")


# ---------------------------------------------------------------------------------------------
# Media, requests and expected answers


def make_media():
    frames = os.path.join(MEDIA, "frames")
    r = subprocess.run([ARGS.bin, "demo", "--save-frames", frames], cwd=WORK,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"linvt demo failed: {r.stdout.decode(errors='replace')[-2000:]}")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-framerate", "4", "-i",
                    os.path.join(frames, "frame_%03d.png"), "-pix_fmt", "yuv420p",
                    os.path.join(MEDIA, "clip.mp4")], check=True, timeout=120)
    shutil.copy(os.path.join(frames, "frame_000.png"), os.path.join(OUTSIDE, "secret.png"))
    with open(os.path.join(MEDIA, "noise.bin"), "wb") as f:
        f.write(random.Random(1).randbytes(4096))


def path_of(rel):
    return os.path.join(MEDIA, rel)


def data_url(rel, mime):
    with open(path_of(rel), "rb") as f:
        return f"data:{mime};base64," + base64.b64encode(f.read()).decode()


def file_url(rel):
    return "file://" + path_of(rel)


FRAME_FILES = [f"frames/frame_{i:03d}.png" for i in range(8)]


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def video_part(url):
    return {"type": "video_url", "video_url": {"url": url}}


# An input: how the request carries it (parts) and how `linvt ask` reads it.
INPUTS = {
    "img0_data": (lambda: [image_part(data_url("frames/frame_000.png", "image/png"))],
                  ("--image", "frames/frame_000.png")),
    "img0_file": (lambda: [image_part(file_url("frames/frame_000.png"))],
                  ("--image", "frames/frame_000.png")),
    "img5_data": (lambda: [image_part(data_url("frames/frame_005.png", "image/png"))],
                  ("--image", "frames/frame_005.png")),
    "img5_file": (lambda: [image_part(file_url("frames/frame_005.png"))],
                  ("--image", "frames/frame_005.png")),
    "vid_data": (lambda: [video_part(data_url("clip.mp4", "video/mp4"))], ("--video", "clip.mp4")),
    "vid_file": (lambda: [video_part(file_url("clip.mp4"))], ("--video", "clip.mp4")),
    "frames_data": (lambda: [image_part(data_url(f, "image/png")) for f in FRAME_FILES],
                    ("--frames", "frames")),
    "frames_file": (lambda: [image_part(file_url(f)) for f in FRAME_FILES], ("--frames", "frames")),
}

_PARTS_CACHE = {}


def parts(inp):
    if inp not in _PARTS_CACHE:
        _PARTS_CACHE[inp] = INPUTS[inp][0]()
    return _PARTS_CACHE[inp]


def body_for(inp, question, n, stream_=False, model=None, **extra):
    b = {
        "model": model or NAME,
        "messages": [{"role": "user", "content": parts(inp) + [{"type": "text", "text": question}]}],
        "max_tokens": n,
        "temperature": 0,
    }
    if stream_:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    b.update(extra)
    return b


_ASK = {}
_ASK_LOCK = threading.Lock()


def ask(inp, question, n, extra=()):
    """`linvt ask --json` for the same input: its JSON (answer, token_ids, tokens, …)."""
    flag, rel = INPUTS[inp][1]
    key = (flag, rel, question, n, tuple(extra))
    with _ASK_LOCK:
        if key in _ASK:
            return _ASK[key]
    cmd = [ARGS.bin, "ask", "--model", ARGS.model, "--backend", "cpu", flag, path_of(rel),
           "--question", question, "--max-new-tokens", str(n), "--json"] + list(extra)
    r = subprocess.run(cmd, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.decode(errors='replace')[-2000:]}")
    line = [ln for ln in r.stdout.decode().splitlines() if ln.startswith("{")][-1]
    out = json.loads(line)
    with _ASK_LOCK:
        _ASK[key] = out
    return out


def expected(inp, question, n, extra=()):
    return ask(inp, question, n, extra)["answer"]


# ---------------------------------------------------------------------------------------------
# Bad requests (raw HTTP): body, expected status, type, code, param


def long_question():
    return "describe " * 2600  # ~2600+ tokens: more than the 2048-token context


def bad_requests():
    """name -> (body (dict, or bytes sent as is), path, status, type, code, param)."""
    ok_parts = parts("img0_file")
    q = {"type": "text", "text": "What is it?"}
    noise = base64.b64encode(random.Random(2).randbytes(3000)).decode()

    def msgs(content):
        return [{"role": "user", "content": content}]

    return {
        "malformed JSON": (b'{"model": "x", "messages": [', "/v1/chat/completions",
                           400, "invalid_request_error", None, None),
        "unsupported part input_audio": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, q])},
            "/v1/chat/completions", 400, "invalid_request_error", None, "messages[0].content[0]"),
        "undecodable image": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs([image_part("data:image/png;base64," + noise), q])},
            "/v1/chat/completions", 400, "invalid_request_error", "invalid_image", None),
        "undecodable video": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs([video_part("data:video/mp4;base64," + noise), q])},
            "/v1/chat/completions", 400, "invalid_request_error", "invalid_video", None),
        "unknown model": (
            {"model": "no-such-model", "max_tokens": 4, "messages": msgs(ok_parts + [q])},
            "/v1/chat/completions", 404, None, "model_not_found", None),
        "n=2": ({"model": NAME, "max_tokens": 4, "n": 2, "messages": msgs(ok_parts + [q])},
                "/v1/chat/completions", 400, "invalid_request_error", None, "n"),
        "last message not the user's": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs("What is it?") + [{"role": "assistant", "content": "A bar."}]},
            "/v1/chat/completions", 400, "invalid_request_error", None, "messages"),
        "file outside allowed dir": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs([image_part("file://" + os.path.join(OUTSIDE, "secret.png")), q])},
            "/v1/chat/completions", 403, "permission_error", "path_not_allowed", None),
        "file path traversal": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs([image_part("file://" + MEDIA + "/../" + os.path.basename(OUTSIDE)
                                          + "/secret.png"), q])},
            "/v1/chat/completions", 403, "permission_error", "path_not_allowed", None),
        "prompt longer than the context": (
            {"model": NAME, "max_tokens": 4,
             "messages": msgs(ok_parts + [{"type": "text", "text": long_question()}])},
            "/v1/chat/completions", 400, "invalid_request_error", None, None),
        "temperature out of range": (
            {"model": NAME, "max_tokens": 4, "temperature": 5, "messages": msgs(ok_parts + [q])},
            "/v1/chat/completions", 400, "invalid_request_error", None, "temperature"),
        "five stop strings": (
            {"model": NAME, "max_tokens": 4, "stop": ["a", "b", "c", "d", "e"], "messages": msgs(ok_parts + [q])},
            "/v1/chat/completions", 400, "invalid_request_error", None, "stop"),
        "max_tokens 0": ({"model": NAME, "max_tokens": 0, "messages": msgs(ok_parts + [q])},
                         "/v1/chat/completions", 400, "invalid_request_error", None, "max_tokens"),
        "unknown path": ({"x": 1}, "/v1/embeddings", 404, None, None, None),
    }


def send_bad(port, spec, headers=None):
    body, path, *_ = spec
    st, h, data = request(port, "POST", path, body, headers, timeout=60)
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data.decode(errors="replace")
    return st, h, parsed


# ---------------------------------------------------------------------------------------------
# a. The SDK against the main server


@guarded("sdk")
def test_sdk(srv):
    section("a. OpenAI SDK: answers, streaming, usage, stop strings, multi-turn")
    client = OpenAI(base_url=srv.base(), api_key="unused", max_retries=0, timeout=60)

    ids = [m.id for m in client.models.list().data]
    check("sdk models.list has the served name", NAME in ids, f"got {ids}")

    # Text-only chat (no media): answered, no visual tokens, the same text streamed or not.
    text_msgs = [{"role": "user", "content": "Name a colour."}]
    r = client.chat.completions.create(model=NAME, messages=text_msgs, temperature=0, max_tokens=8)
    chunks = client.chat.completions.create(model=NAME, messages=text_msgs, temperature=0,
                                            max_tokens=8, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check("sdk text-only chat: answered, 0 visual tokens, streamed == plain",
          r.choices[0].message.content and r.usage.completion_tokens == 8
          and r.model_extra is not None and r.usage.model_extra.get("visual_tokens") == 0
          and streamed == r.choices[0].message.content,
          f"{r.choices[0].message.content!r} / {streamed!r}, usage {r.usage}")

    def sdk_chat(inp, q, n, **kw):
        msgs = [{"role": "user", "content": parts(inp) + [{"type": "text", "text": q}]}]
        return client.chat.completions.create(model=NAME, messages=msgs, temperature=0, **kw)

    cases = [
        ("image data URL", "img0_data", "What is it?", 12),
        ("image file://", "img0_file", "What is it?", 12),
        ("image 5 file://", "img5_file", "Describe the picture in detail.", 10),
        ("video data URL", "vid_data", "What moves?", 16),
        ("video file://", "vid_file", "What moves?", 16),
        ("8 image parts as frames (data URLs)", "frames_data", "What moves?", 16),
        ("8 image parts as frames (file://)", "frames_file", "Describe the picture in detail.", 9),
    ]
    for label, inp, q, n in cases:
        ref = ask(inp, q, n)
        r = sdk_chat(inp, q, n, max_tokens=n)
        c = r.choices[0]
        check(f"sdk {label}: greedy answer == linvt ask", c.message.content == ref["answer"],
              f"got {c.message.content!r}, want {ref['answer']!r}")
        u = r.usage.model_dump()
        want_fin = ref.get("finish_reason", "length")
        probs = []
        if c.finish_reason != want_fin:
            probs.append(f"finish_reason {c.finish_reason!r} != {want_fin!r}")
        if c.finish_reason == "length" and u["completion_tokens"] != n:
            probs.append(f"completion_tokens {u['completion_tokens']} != {n}")
        if u["completion_tokens"] != len(ref["token_ids"]):
            probs.append(f"completion_tokens {u['completion_tokens']} != ask's {len(ref['token_ids'])}")
        if u["prompt_tokens"] != ref["tokens"]["prompt"]:
            probs.append(f"prompt_tokens {u['prompt_tokens']} != ask's {ref['tokens']['prompt']}")
        if u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"]:
            probs.append("total_tokens != prompt + completion")
        if u.get("visual_tokens") != ref["tokens"]["visual"]:
            probs.append(f"visual_tokens {u.get('visual_tokens')} != ask's {ref['tokens']['visual']}")
        if u.get("prompt_visual_tokens") != ref["tokens"]["prompt_visual"]:
            probs.append(f"prompt_visual_tokens {u.get('prompt_visual_tokens')} != ask's "
                         f"{ref['tokens']['prompt_visual']}")
        if r.object != "chat.completion" or r.model != NAME or not r.id:
            probs.append(f"object/model/id: {r.object!r} {r.model!r} {r.id!r}")
        if c.message.role != "assistant":
            probs.append(f"role {c.message.role!r}")
        check(f"sdk {label}: finish_reason and usage", not probs, "; ".join(probs) + f" usage {u}")

    # max_completion_tokens instead of max_tokens.
    ref = expected("vid_file", "What is it?", 11)
    r = sdk_chat("vid_file", "What is it?", 11, max_completion_tokens=11)
    check("sdk max_completion_tokens", r.choices[0].message.content == ref
          and r.usage.completion_tokens == 11, f"got {r.choices[0].message.content!r} "
          f"({r.usage.completion_tokens} tokens), want {ref!r}")

    # Streaming: the deltas joined == the non-streamed answer, chunk layout, usage chunk.
    for label, inp, q, n in [("video file://", "vid_file", "What moves?", 16),
                             ("image data URL", "img5_data", "What is it?", 20),
                             ("frames", "frames_file", "What moves?", 16)]:
        ref = expected(inp, q, n)
        msgs = [{"role": "user", "content": parts(inp) + [{"type": "text", "text": q}]}]
        chunks = list(client.chat.completions.create(
            model=NAME, messages=msgs, temperature=0, max_tokens=n, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check(f"sdk stream {label}: joined deltas == linvt ask == non-streamed", text == ref,
              f"got {text!r}, want {ref!r}")
        probs = []
        if not chunks or not chunks[0].choices or chunks[0].choices[0].delta.role != "assistant":
            probs.append("first chunk has no delta.role assistant")
        fins = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        if fins != ["length"]:
            probs.append(f"finish reasons {fins}")
        last = chunks[-1] if chunks else None
        if last is None or last.choices or not last.usage or last.usage.completion_tokens != n:
            probs.append(f"last chunk is not a usage chunk with completion_tokens {n}: {last}")
        if len({c.id for c in chunks}) != 1:
            probs.append("chunk ids differ")
        check(f"sdk stream {label}: role, finish_reason and usage chunks", not probs, "; ".join(probs))

    # Stream without include_usage: no usage chunk.
    msgs = [{"role": "user", "content": parts("img0_file") + [{"type": "text", "text": "What is it?"}]}]
    chunks = list(client.chat.completions.create(model=NAME, messages=msgs, temperature=0,
                                                 max_tokens=6, stream=True))
    check("sdk stream without include_usage has no usage chunk",
          all(c.choices and not c.usage for c in chunks), f"{chunks[-1] if chunks else None}")

    # Multi-turn: the first turn's video is reused for the later question.
    a1 = expected("vid_file", "What moves?", 16)
    msgs = [{"role": "user", "content": parts("vid_file") + [{"type": "text", "text": "What moves?"}]},
            {"role": "assistant", "content": a1},
            {"role": "user", "content": "What is it?"}]
    r = client.chat.completions.create(model=NAME, messages=msgs, temperature=0, max_tokens=8)
    single = ask("vid_file", "What moves?", 16)["tokens"]["prompt"]
    check("sdk multi-turn reuses the first turn's video (200)",
          isinstance(r.choices[0].message.content, str) and r.usage.completion_tokens > 0
          and r.usage.prompt_tokens > single and r.usage.prompt_visual_tokens == 8,
          f"{r}")
    # The same with a system message (it replaces the default one: the prompt changes length).
    r2 = client.chat.completions.create(model=NAME, temperature=0, max_tokens=8,
                                        messages=[{"role": "system", "content": "Be brief."}] + msgs)
    r3 = client.chat.completions.create(model=NAME, temperature=0, max_tokens=8,
                                        messages=[{"role": "system", "content": "Be brief. " * 10}] + msgs)
    check("sdk multi-turn with a system message (200, the system text is in the prompt)",
          r2.usage.prompt_tokens != r.usage.prompt_tokens
          and r3.usage.prompt_tokens > r2.usage.prompt_tokens, f"{r.usage} / {r2.usage} / {r3.usage}")
    # Media in a later turn, after a text-only exchange.
    r4 = client.chat.completions.create(model=NAME, temperature=0, max_tokens=8, messages=[
        {"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": parts("img0_file") + [{"type": "text", "text": "What is it?"}]}])
    check("sdk multi-turn with the image in the last turn (200)",
          r4.usage.prompt_tokens > ask("img0_file", "What is it?", 12)["tokens"]["prompt"]
          and r4.usage.prompt_visual_tokens > 0, f"{r4.usage}")
    # Media in two user turns is refused.
    try:
        client.chat.completions.create(model=NAME, temperature=0, max_tokens=8, messages=msgs + [
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": parts("img0_file") + [{"type": "text", "text": "And this?"}]}])
        check("sdk media in two user turns -> BadRequestError", False, "no exception")
    except openai.BadRequestError:
        check("sdk media in two user turns -> BadRequestError", True)

    # Stop strings: the answer's prefix before the stop string, finish_reason "stop".
    full = expected("vid_file", "What moves?", 16)
    words = [w for w in re.findall(r"[A-Za-z]{3,}", full)]
    stop = words[len(words) // 2] if words else full[len(full) // 2:len(full) // 2 + 2]
    want = full[:full.find(stop)]
    info(f"stop string {stop!r} in {full!r}")
    msgs = [{"role": "user", "content": parts("vid_file") + [{"type": "text", "text": "What moves?"}]}]
    r = client.chat.completions.create(model=NAME, messages=msgs, temperature=0, max_tokens=16,
                                       stop=[stop, "zzzqqq"])
    check("sdk stop string: text ends before it, finish_reason stop",
          r.choices[0].message.content == want and r.choices[0].finish_reason == "stop",
          f"got {r.choices[0].message.content!r} / {r.choices[0].finish_reason}, want {want!r} / stop")
    chunks = list(client.chat.completions.create(model=NAME, messages=msgs, temperature=0,
                                                 max_tokens=16, stop=stop, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    fins = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("sdk stop string while streaming", text == want and fins == ["stop"],
          f"got {text!r} {fins}, want {want!r} ['stop']")

    # Extension field through extra_body (mm_processor_kwargs) and at the top level.
    ref = expected("vid_file", "What moves?", 12, ("--num-frames", "4"))
    r = client.chat.completions.create(model=NAME, messages=msgs, temperature=0, max_tokens=12,
                                       extra_body={"mm_processor_kwargs": {"num_frames": 4}})
    check("sdk mm_processor_kwargs num_frames=4 == linvt ask --num-frames 4",
          r.choices[0].message.content == ref, f"got {r.choices[0].message.content!r}, want {ref!r}")
    r = client.chat.completions.create(model=NAME, messages=msgs, temperature=0, max_tokens=12,
                                       extra_body={"num_frames": 4})
    check("sdk top-level num_frames=4 == linvt ask --num-frames 4",
          r.choices[0].message.content == ref, f"got {r.choices[0].message.content!r}, want {ref!r}")

    # Sampling with a seed is reproducible.
    outs = [client.chat.completions.create(model=NAME, messages=msgs, temperature=1.0, top_p=0.9,
                                           seed=1234, max_tokens=12).choices[0].message.content
            for _ in range(2)]
    check("sdk temperature 1 with a fixed seed is reproducible", outs[0] == outs[1], f"{outs}")

    # SDK exception classes.
    def raises(label, exc, **kw):
        try:
            client.chat.completions.create(**kw)
        except exc as e:
            return check(f"sdk raises {exc.__name__} ({label})", True)
        except Exception as e:  # noqa: BLE001
            return check(f"sdk raises {exc.__name__} ({label})", False, f"raised {type(e).__name__}: {e}")
        return check(f"sdk raises {exc.__name__} ({label})", False, "no exception")

    ok_msgs = [{"role": "user", "content": parts("img0_file") + [{"type": "text", "text": "What is it?"}]}]
    raises("unknown model", openai.NotFoundError, model="nope", messages=ok_msgs, max_tokens=4)
    raises("input_audio part", openai.BadRequestError, model=NAME, max_tokens=4, messages=[
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                                     {"type": "text", "text": "hi"}]}])
    raises("last message not the user's", openai.BadRequestError, model=NAME, max_tokens=4,
           messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    raises("file outside the allowed dir", openai.PermissionDeniedError, model=NAME, max_tokens=4,
           messages=[{"role": "user", "content": [
               image_part("file://" + os.path.join(OUTSIDE, "secret.png")), {"type": "text", "text": "hi"}]}])
    raises("n=2", openai.BadRequestError, model=NAME, max_tokens=4, n=2, messages=ok_msgs)


# ---------------------------------------------------------------------------------------------
# b. Errors over raw HTTP


class NeverAnswers:
    """A loopback socket that accepts connections and never answers (until closed)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def close(self):
        self.stopped = True
        for c in self.conns:
            c.close()
        self.sock.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def media_http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(QuietHandler, directory=MEDIA))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@guarded("errors")
def test_errors(srv):
    section("b. Errors (raw HTTP)")
    for name, spec in bad_requests().items():
        _, _, status, etype, code, param = spec
        expect_error(f"error: {name} -> {status}", send_bad(srv.port, spec), status, etype, code, param)
    # A prompt too long for the context while streaming: a plain 400, not a broken stream.
    b = body_for("img0_file", long_question(), 4, stream_=True)
    st, h, body, _ = stream(srv.port, b)
    expect_error("error: prompt longer than the context, streaming -> 400", (st, h, body), 400,
                 "invalid_request_error")
    # The chat endpoint with GET.
    st, _, _ = request(srv.port, "GET", "/v1/chat/completions")
    check("error: GET /v1/chat/completions is not 200", st in (404, 405), f"status {st}")
    # Unsupported URL scheme and an http URL that 404s.
    st, h, body = chat(srv.port, {"model": NAME, "max_tokens": 4, "messages": [{"role": "user", "content": [
        image_part("ftp://example.invalid/x.png"), {"type": "text", "text": "hi"}]}]})
    expect_error("error: ftp:// URL -> 400", (st, h, body), 400, "invalid_request_error")
    # Server survives all of it.
    st, _, data = request(srv.port, "GET", "/health", timeout=5)
    check("health still ok after the bad requests", st == 200, f"{st} {data!r}")


@guarded("http media")
def test_http_media(srv, small):
    section("b. http:// media: fetch, size cap, timeout")
    web = media_http_server()
    hang = NeverAnswers()
    try:
        wport = web.server_address[1]
        ref = expected("vid_file", "What moves?", 16)
        url = f"http://127.0.0.1:{wport}/clip.mp4"
        b = body_for("vid_file", "What moves?", 16)
        b["messages"][0]["content"][0] = video_part(url)
        st, _, body = chat(srv.port, b)
        got = body["choices"][0]["message"]["content"] if st == 200 else body
        check("http:// video URL answers == file:// answer", st == 200 and got == ref,
              f"status {st}, got {short(got)}, want {ref!r}")
        b2 = body_for("img0_file", "What is it?", 12)
        b2["messages"][0]["content"][0] = image_part(f"http://127.0.0.1:{wport}/frames/frame_000.png")
        st, _, body = chat(srv.port, b2)
        want = expected("img0_file", "What is it?", 12)
        got = body["choices"][0]["message"]["content"] if st == 200 else body
        check("http:// image URL answers == linvt ask", st == 200 and got == want,
              f"status {st}, got {short(got)}")
        b3 = body_for("img0_file", "What is it?", 4)
        b3["messages"][0]["content"][0] = image_part(f"http://127.0.0.1:{wport}/missing.png")
        expect_error("http:// URL answering 404 -> 400 media_fetch_failed", chat(srv.port, b3), 400,
                     "invalid_request_error", "media_fetch_failed")
        # The small-limits server: --max-media-bytes below the clip's size.
        expect_error("http:// video over --max-media-bytes -> 413 media_too_large",
                     chat(small.port, b), 413, None, "media_too_large")
        b4 = body_for("vid_data", "What moves?", 4)
        expect_error("data: video over --max-media-bytes -> 413 media_too_large",
                     chat(small.port, b4), 413, None, "media_too_large")
        b5 = body_for("vid_file", "What moves?", 4)
        expect_error("file:// video over --max-media-bytes -> 413 media_too_large",
                     chat(small.port, b5), 413, None, "media_too_large")
        # A URL to a socket that never answers, --media-timeout 2.
        b6 = body_for("vid_file", "What moves?", 4)
        b6["messages"][0]["content"][0] = video_part(f"http://127.0.0.1:{hang.port}/clip.mp4")
        t0 = time.time()
        got = chat(small.port, b6, timeout=30)
        dt = time.time() - t0
        expect_error("hanging media URL -> 400 media_fetch_failed", got, 400, "invalid_request_error",
                     "media_fetch_failed")
        check("hanging media URL fails within --media-timeout 2 + 3 s", 1.0 <= dt <= 5.0, f"took {dt:.1f} s")
        # Body limit: --max-body-bytes 100000 and a 200 kB body.
        big = body_for("img0_file", "What is it? " + "x" * 200_000, 4)
        expect_error("body over --max-body-bytes -> 413", chat(small.port, big), 413)
        st, _, _ = request(small.port, "GET", "/health", timeout=5)
        check("small-limits server healthy after", st == 200, f"{st}")
    finally:
        hang.close()
        web.shutdown()
        web.server_close()


@guarded("api key")
def test_api_key(srv):
    section("b. --api-key")
    b = body_for("img0_file", "What is it?", 6)
    expect_error("api key: none -> 401", chat(srv.port, b), 401, "authentication_error")
    expect_error("api key: wrong -> 401", chat(srv.port, b, {"Authorization": "Bearer nope"}), 401,
                 "authentication_error")
    st, _, body = chat(srv.port, b, {"Authorization": "Bearer secret"})
    want = expected("img0_file", "What is it?", 6)
    check("api key: right key -> 200 with the answer",
          st == 200 and body["choices"][0]["message"]["content"] == want, f"{st} {short(body)}")
    st, _, data = request(srv.port, "GET", "/health", timeout=5)
    check("api key: /health without a key -> 200", st == 200, f"{st} {data!r}")
    st, _, _ = request(srv.port, "GET", "/metrics", timeout=5)
    check("api key: /metrics without a key -> 401", st == 401, f"{st}")
    st, _, _ = request(srv.port, "GET", "/v1/models", timeout=5)
    check("api key: /v1/models without a key -> 401", st == 401, f"{st}")
    bad = OpenAI(base_url=srv.base(), api_key="wrong", max_retries=0, timeout=30)
    try:
        bad.models.list()
        check("sdk raises AuthenticationError (wrong key)", False, "no exception")
    except openai.AuthenticationError:
        check("sdk raises AuthenticationError (wrong key)", True)
    good = OpenAI(base_url=srv.base(), api_key="secret", max_retries=0, timeout=30)
    r = good.chat.completions.create(model=NAME, messages=b["messages"], temperature=0, max_tokens=6)
    check("sdk with the right key answers", r.choices[0].message.content == want, f"{r}")


@guarded("queue full")
def test_queue_full(srv):
    section("b. Queue full (--parallel 1 --queue 1)")
    q, n = "Tell a long story about this.", 1000
    want = expected("vid_file", q, n)
    for attempt, count in enumerate((6, 10)):
        barrier = threading.Barrier(count)
        results = [None] * count

        def one(i):
            barrier.wait(timeout=30)
            try:
                results[i] = chat(srv.port, body_for("vid_file", q, n), timeout=120)
            except Exception as e:  # noqa: BLE001
                results[i] = (None, {}, f"{type(e).__name__}: {e}")

        ts = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=180)
        statuses = [r[0] if r else None for r in results]
        if 429 in statuses or attempt == 1:
            break
        info(f"no 429 among {count} concurrent requests ({statuses}); retrying with more")
    info(f"statuses: {statuses}")
    rejected = [r for r in results if r and r[0] == 429]
    others = [r for r in results if not r or r[0] != 429]
    check("queue full: at least one 429", rejected, f"statuses {statuses}")
    check("queue full: every 429 has Retry-After and type rate_limit_error",
          rejected and all(r[1].get("retry-after") and err_of(r[2]).get("type") == "rate_limit_error"
                           for r in rejected), f"{[(r[1].get('retry-after'), r[2]) for r in rejected]}")
    check("queue full: every other request answered 200 with the greedy answer",
          others and all(r[0] == 200 and r[2]["choices"][0]["message"]["content"] == want for r in others),
          f"{[(r[0], short(r[2], 120)) if r else None for r in others]}")
    m = metrics(srv.port)
    check("queue full: metrics count the rejections",
          requests_total(m, "rejected_queue_full") == len(rejected),
          f"rejected_queue_full {requests_total(m, 'rejected_queue_full')} vs {len(rejected)}")


# ---------------------------------------------------------------------------------------------
# c. Load test


def disconnect_client(port, body, got_chunk):
    """Starts a streaming request and closes the socket after the first data chunk."""
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " + str(len(payload)).encode()
                  + b"\r\n\r\n" + payload)
        buf = b""
        while not (b"\r\n\r\n" in buf and b"data:" in buf.split(b"\r\n\r\n", 1)[1]):
            d = s.recv(4096)
            if not d:
                break
            buf += d
        got_chunk.append(b"\r\n\r\n" in buf and b"data:" in buf.split(b"\r\n\r\n", 1)[1])
    finally:
        s.close()


@guarded("plain disconnect")
def test_plain_disconnect(srv):
    """A non-streaming client that hangs up mid-answer cancels its question (the server drops
    the handler with the connection; the model thread sees the closed channel at its next step)."""
    section("c2. a non-streaming client that disconnects cancels its question")
    # A question whose greedy answer runs long (the random model may stop early on some): time
    # it answered in full first, then hang up well before that.
    body, full_s = None, 0.0
    for q in ["Tell me a story.", "Tell me a very long story.", "Describe everything.", "Go on."]:
        b = {"model": NAME, "temperature": 0, "max_tokens": 1900,
             "messages": [{"role": "user", "content": q}]}
        t0 = time.time()
        st, _, v = chat(srv.port, b, timeout=120)
        if st == 200 and v["usage"]["completion_tokens"] >= 1000 and time.time() - t0 > 0.6:
            body, full_s = b, time.time() - t0
            break
    if body is None:
        check("plain disconnect: a long-answer question found", False, "no candidate ran > 0.6 s")
        return
    info(f"plain disconnect: the full answer takes {full_s:.1f} s; hanging up after 0.15 s")
    before = metrics(srv.port)
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nContent-Length: " + str(len(payload)).encode()
              + b"\r\n\r\n" + payload)
    time.sleep(0.15)
    s.close()
    deadline, m = time.time() + 20, before
    while time.time() < deadline:
        m = metrics(srv.port)
        if requests_total(m, "cancelled") > requests_total(before, "cancelled"):
            break
        time.sleep(0.2)
    check("plain disconnect: cancelled, not answered",
          requests_total(m, "cancelled") == requests_total(before, "cancelled") + 1
          and requests_total(m, "answered") == requests_total(before, "answered"),
          f"cancelled {requests_total(before, 'cancelled')} -> {requests_total(m, 'cancelled')}, "
          f"answered {requests_total(before, 'answered')} -> {requests_total(m, 'answered')}")


@guarded("load")
def test_load(srv):
    section("c. Load: 64 requests from 8 clients (--parallel 4) + 6 disconnecting clients")
    valid_variants = [
        ("img0_data", "What is it?", 8),
        ("img5_file", "Describe the picture in detail.", 12),
        ("vid_file", "What moves?", 16),
        ("vid_data", "Tell a long story about this.", 24),
        ("frames_data", "What moves?", 10),
        ("img0_file", "What moves?", 20),
        ("vid_file", "What is it?", 14),
        ("img5_data", "What is it?", 18),
        ("frames_file", "Describe the picture in detail.", 22),
    ]
    for inp, q, n in valid_variants:  # expectations computed alone, before the load
        expected(inp, q, n)
    bad = bad_requests()
    bad.pop("file path traversal")
    bad_names = list(bad)
    rng = random.Random(7)
    jobs = []
    vi = bi = 0
    for i in range(64):
        if i % 4 == 3:
            jobs.append(("bad", bad_names[bi % len(bad_names)]))
            bi += 1
        else:
            inp, q, n = valid_variants[vi % len(valid_variants)]
            jobs.append(("ok", (inp, q, n, vi % 3 == 1)))
            vi += 1
    rng.shuffle(jobs)
    n_valid = sum(1 for j in jobs if j[0] == "ok")
    n_bad = len(jobs) - n_valid
    results = [None] * len(jobs)
    nexti = [0]
    ilock = threading.Lock()

    def worker():
        while True:
            with ilock:
                i = nexti[0]
                nexti[0] += 1
            if i >= len(jobs):
                return
            kind, spec = jobs[i]
            try:
                if kind == "bad":
                    results[i] = ("bad", spec, send_bad(srv.port, bad[spec]))
                else:
                    inp, q, n, streaming = spec
                    if streaming:
                        st, h, ev, done = stream(srv.port, body_for(inp, q, n, stream_=True), timeout=120)
                        results[i] = ("ok", spec, (st, h, ev, done))
                    else:
                        results[i] = ("ok", spec, chat(srv.port, body_for(inp, q, n), timeout=120))
            except Exception as e:  # noqa: BLE001
                results[i] = (kind, spec, (None, {}, f"{type(e).__name__}: {e}"))

    got_chunk = []
    long_body = body_for("img5_file", "What is it?", 1200, stream_=True)

    def disconnects():
        for _ in range(6):
            time.sleep(0.15)
            try:
                disconnect_client(srv.port, long_body, got_chunk)
            except Exception as e:  # noqa: BLE001
                info(f"disconnecting client: {type(e).__name__}: {e}")

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    threads.append(threading.Thread(target=disconnects))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    wall = time.time() - t0

    answered = [r for r in results if r is not None]
    check("load: every request got a response", len(answered) == len(jobs)
          and all(r[2][0] is not None for r in answered),
          f"{len(answered)}/{len(jobs)} responses; transport errors: "
          f"{[r[2] for r in answered if r[2][0] is None][:5]}")
    wrong, tokens = [], 0
    for r in answered:
        kind, spec, got = r
        if kind == "ok":
            inp, q, n, streaming = spec
            want = expected(inp, q, n)
            if streaming:
                st, _, ev, done = got
                text, fin, usage, role, error = summarize(ev) if st == 200 else (None,) * 5
                if st != 200 or text != want or not done or role != "assistant" or error or not usage:
                    wrong.append(f"stream {spec}: {st} {text!r} (want {want!r}) done={done} err={error}")
                else:
                    tokens += usage["completion_tokens"]
            else:
                st, _, body = got
                text = body["choices"][0]["message"]["content"] if st == 200 else None
                if st != 200 or text != want:
                    wrong.append(f"{spec}: {st} {text!r} (want {want!r}) {short(body, 200) if st != 200 else ''}")
                else:
                    tokens += body["usage"]["completion_tokens"]
    check(f"load: all {n_valid} valid answers == their greedy answers computed alone", not wrong,
          f"{len(wrong)} wrong: " + " | ".join(wrong[:4]))
    bad_wrong = []
    for r in answered:
        kind, spec, got = r
        if kind == "bad":
            _, _, status, etype, code, param = bad[spec]
            e = err_of(got[2])
            if got[0] != status or (etype and e.get("type") != etype) or (code and e.get("code") != code):
                bad_wrong.append(f"{spec}: {got[0]} {short(got[2], 200)}")
    check(f"load: all {n_bad} invalid requests got their 4xx", not bad_wrong, " | ".join(bad_wrong[:4]))
    check("load: the disconnecting clients got a first chunk", len(got_chunk) == 6 and all(got_chunk),
          f"{got_chunk}")
    st, _, data = request(srv.port, "GET", "/health", timeout=5)
    check("load: /health 200 after", st == 200, f"{st} {data!r}")
    # Give the scheduler a moment to notice the closed sockets.
    deadline = time.time() + 10
    while True:
        m = metrics(srv.port)
        if (requests_total(m, "cancelled") >= 1 and m.get("linvt_queue_depth", -1) == 0
                and m.get("linvt_active_sequences", -1) == 0) or time.time() > deadline:
            break
        time.sleep(0.25)
    check("load: metrics answered >= valid requests", requests_total(m, "answered") >= n_valid,
          f"answered {requests_total(m, 'answered')} < {n_valid}")
    check("load: metrics cancelled >= 1 (disconnected streams)", requests_total(m, "cancelled") >= 1,
          f"cancelled {requests_total(m, 'cancelled')}")
    # The unknown path is the router's 404, not a chat request.
    n_bad_chat = sum(1 for j in jobs if j[0] == "bad" and bad[j[1]][1] == "/v1/chat/completions")
    check("load: metrics bad_request counts the invalid chat requests",
          requests_total(m, "bad_request") >= n_bad_chat,
          f"bad_request {requests_total(m, 'bad_request')} < {n_bad_chat} invalid chat requests")
    check("load: metrics queue_depth 0 when idle", m.get("linvt_queue_depth") == 0,
          f"linvt_queue_depth {m.get('linvt_queue_depth')}")
    check("load: metrics active_sequences 0 when idle", m.get("linvt_active_sequences") == 0,
          f"linvt_active_sequences {m.get('linvt_active_sequences')} with no request running")
    # Every chat request lands in exactly one outcome (the unknown path is no chat request).
    n_chat = n_valid + n_bad_chat + len(got_chunk)
    outcomes = {o: requests_total(m, o) for o in
                ("answered", "failed", "rejected_queue_full", "cancelled", "bad_request")}
    check("load: metrics outcomes sum to the chat requests sent (each counted once)",
          sum(outcomes.values()) == n_chat, f"{outcomes} sum to {sum(outcomes.values()):.0f}, "
          f"{n_chat} chat requests were sent ({n_valid} valid, {n_bad_chat} invalid, "
          f"{len(got_chunk)} disconnected)")
    counted = m.get('linvt_tokens_total{kind="completion"}', 0)
    check("load: metrics completion tokens >= the valid answers' tokens", counted >= tokens,
          f"{counted} < {tokens}")
    info(f"load: {len(jobs)} requests + 6 disconnects in {wall:.2f} s; {tokens} completion tokens of "
         f"valid answers -> {tokens / wall:.1f} tokens/s; metrics: answered "
         f"{requests_total(m, 'answered'):.0f}, cancelled {requests_total(m, 'cancelled'):.0f}, "
         f"bad_request {requests_total(m, 'bad_request'):.0f}, failed {requests_total(m, 'failed'):.0f}")


# ---------------------------------------------------------------------------------------------
# d. SIGTERM during load


@guarded("sigterm")
def test_sigterm():
    section("d. SIGTERM while requests run")
    timeout = 15
    srv = Server("sigterm", ["--parallel", "1", "--shutdown-timeout", str(timeout)]).start()
    reqs = [("img5_file", "What is it?", 1200, True),
            ("img0_file", "What moves?", 1100, False),
            ("vid_file", "Tell a long story about this.", 1000, True),
            ("img5_data", "Describe the picture in detail.", 1000, False)]
    wants = [expected(inp, q, n) for inp, q, n, _ in reqs]
    results = [None] * len(reqs)
    first = threading.Event()

    def run(i):
        inp, q, n, streaming = reqs[i]
        try:
            if streaming:
                results[i] = stream(srv.port, body_for(inp, q, n, stream_=True), timeout=120,
                                    on_event=lambda ev: first.set())
            else:
                results[i] = chat(srv.port, body_for(inp, q, n), timeout=120)
        except Exception as e:  # noqa: BLE001
            results[i] = (None, {}, f"{type(e).__name__}: {e}", False)

    ts = []
    for i in range(len(reqs)):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        ts.append(t)
        if i == 0:
            first.wait(timeout=30)  # the first one is running
    # Wait until the others are queued (one runs, three wait).
    deadline = time.time() + 10
    while time.time() < deadline:
        m = metrics(srv.port)
        if m.get("linvt_queue_depth", 0) + min(1, m.get("linvt_active_sequences", 0)) >= len(reqs):
            break
        time.sleep(0.02)
    m = metrics(srv.port)
    info(f"at SIGTERM: queue_depth {m.get('linvt_queue_depth')}, active {m.get('linvt_active_sequences')}, "
         f"answered {requests_total(m, 'answered')}")
    check("sigterm: the requests are still running when the signal comes",
          requests_total(m, "answered") < len(reqs), f"{requests_total(m, 'answered')} answered already")
    t_sig = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        st, _, body = chat(srv.port, body_for("img0_file", "What is it?", 4), timeout=10)
        after = f"status {st}"
        after_ok = st == 503
    except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected) as e:
        after, after_ok = f"{type(e).__name__}", True
    check("sigterm: a request sent after the signal is refused (connection refused or 503)", after_ok, after)
    info(f"sigterm: the request after the signal got: {after}")
    for t in ts:
        t.join(timeout=timeout + 30)
    for i, (inp, q, n, streaming) in enumerate(reqs):
        r = results[i]
        if streaming:
            st, _, ev, done = r if r else (None, {}, [], False)
            text = summarize(ev)[0] if st == 200 else None
            ok = st == 200 and done and text == wants[i]
        else:
            st, _, body = r[:3] if r else (None, {}, None)
            text = body["choices"][0]["message"]["content"] if st == 200 else None
            ok = st == 200 and text == wants[i]
        check(f"sigterm: in-flight request {i} ({'stream' if streaming else 'plain'}, {n} tokens) "
              f"completes with the full answer", ok,
              f"status {st}, got {short(text, 120)!r}, want {short(wants[i], 120)!r}")
    try:
        rc = srv.proc.wait(timeout=timeout + 5 - (time.time() - t_sig))
    except (subprocess.TimeoutExpired, ValueError):
        rc = None
    dt = time.time() - t_sig
    check(f"sigterm: the server exits 0 within --shutdown-timeout {timeout} + 5 s", rc == 0,
          f"rc {rc} after {dt:.1f} s; log: {srv.log_tail(600)}")
    info(f"sigterm: server exited {rc} {dt:.1f} s after the signal")
    srv.stop()


# ---------------------------------------------------------------------------------------------
# e. Batch


def batch_lines():
    """(input lines, {custom_id: (input, question, n)})"""
    valid = [
        ("req-01", "img0_data", "What is it?", 16, {}),
        ("req-02", "vid_file", "What moves?", 16, {}),
        None,  # malformed JSON line
        ("req-03", "frames_file", "What moves?", 16, {}),
        ("req-04", "img5_file", "What is it?", 300, {}),
        "bad-url",
        ("req-05", "vid_data", "Tell a long story about this.", 300, {}),
        ("req-06", "img0_file", "Describe the picture in detail.", 16, {}),
        ("req-07", "img5_data", "Describe the picture in detail.", 24, {"stream": True}),
        ("req-08", "vid_file", "What is it?", 300, {}),
        ("req-09", "img0_data", "What moves?", 12, {"max_completion_tokens": 12}),
        ("req-10", "frames_data", "Describe the picture in detail.", 16, {}),
    ]
    lines, specs = [], {}
    for v in valid:
        if v is None:
            lines.append('{"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {')
        elif v == "bad-url":
            lines.append(json.dumps({"custom_id": "bad-url", "method": "POST", "url": "/v1/embeddings",
                                     "body": {"model": NAME, "input": "hi"}}))
        else:
            cid, inp, q, n, extra = v
            b = body_for(inp, q, n, **extra)
            if "max_completion_tokens" in extra:
                del b["max_tokens"]
            lines.append(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                     "body": b}))
            specs[cid] = (inp, q, n)
    return lines, specs


def run_batch(inp, out, extra=(), timeout=300):
    cmd = [ARGS.bin, "batch", "--model", ARGS.model, "--backend", "cpu", "--input", inp,
           "--output", out, "--allowed-media-dir", MEDIA] + list(extra)
    return subprocess.run(cmd, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def read_results(path):
    """(parsed lines, number of unparsable lines)"""
    rows, broken = [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                broken += 1
    return rows, broken


def complete_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


@guarded("batch")
def test_batch():
    section("e. linvt batch")
    lines, specs = batch_lines()
    named = set(specs) | {"bad-url"}
    wants = {cid: expected(*s) for cid, s in specs.items()}
    inp = os.path.join(WORK, "batch-in.jsonl")
    with open(inp, "w") as f:
        f.write("\n".join(lines) + "\n")

    def verify(label, path, want_null_lines=1):
        rows, broken = read_results(path)
        ids = [r.get("custom_id") for r in rows]
        probs = []
        if broken:
            probs.append(f"{broken} unparsable lines")
        for cid in sorted(named):
            if ids.count(cid) != 1:
                probs.append(f"{cid} appears {ids.count(cid)}×")
        nulls = ids.count(None)
        if want_null_lines is not None and nulls != want_null_lines:
            probs.append(f"{nulls} results with custom_id null (want {want_null_lines})")
        extra = set(ids) - named - {None}
        if extra:
            probs.append(f"unexpected custom_ids {extra}")
        check(f"batch {label}: each custom_id exactly once", not probs, "; ".join(probs))
        probs = []
        for r in rows:
            cid, resp = r.get("custom_id"), r.get("response") or {}
            if not r.get("id") or "error" not in r:
                probs.append(f"{cid}: no id/error fields")
            if cid in specs:
                body = resp.get("body", {})
                text = (body.get("choices") or [{}])[0].get("message", {}).get("content")
                if resp.get("status_code") != 200 or text != wants[cid]:
                    probs.append(f"{cid}: {resp.get('status_code')} {text!r} want {wants[cid]!r}")
                elif body.get("object") != "chat.completion" or resp.get("request_id") != body.get("id"):
                    probs.append(f"{cid}: object {body.get('object')!r}, request_id {resp.get('request_id')!r}")
            elif cid == "bad-url" or cid is None:
                # A line that is not a runnable request: no response, OpenAI's batch `error`
                # with the input line number (how a rerun recognises it without a custom_id).
                e = r.get("error") or {}
                if r.get("response") is not None or e.get("code") != "invalid_request_line" \
                        or not isinstance(e.get("line"), int) or not e.get("message"):
                    probs.append(f"{cid}: {short(r, 300)}")
        check(f"batch {label}: status codes and answers == linvt ask", not probs, " | ".join(probs[:4]))
        return rows

    out_a = os.path.join(WORK, "batch-a.jsonl")
    t0 = time.time()
    r = run_batch(inp, out_a)
    info(f"batch a: {time.time() - t0:.1f} s, rc {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
    check("batch uninterrupted run exits 0", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
    rows_a = verify("out_a", out_a)
    by_id_a = {x["custom_id"]: x["response"]["body"] for x in rows_a if x.get("custom_id") in specs}

    # Rerun into the complete output: nothing to do, nothing appended.
    size = os.path.getsize(out_a)
    r = run_batch(inp, out_a)
    rows2, _ = read_results(out_a)
    nulls = sum(1 for x in rows2 if x.get("custom_id") is None)
    check("batch rerun on a complete output appends nothing (named lines and the malformed one)",
          r.returncode == 0 and os.path.getsize(out_a) == size and nulls == 1,
          f"rc {r.returncode}, {os.path.getsize(out_a) - size} bytes appended, {nulls} null results")

    # Killed mid-run, then resumed.
    out_b = os.path.join(WORK, "batch-b.jsonl")
    cmd = [ARGS.bin, "batch", "--model", ARGS.model, "--backend", "cpu", "--input", inp,
           "--output", out_b, "--allowed-media-dir", MEDIA, "--parallel", "1"]
    p = subprocess.Popen(cmd, cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at, deadline = None, time.time() + 120
    while time.time() < deadline:
        n = complete_lines(out_b)
        if p.poll() is not None:
            break
        if n >= 2:
            p.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.003)
    p.wait(timeout=30)
    before = complete_lines(out_b)
    if killed_at is None:
        info(f"NOTE: the batch finished ({before} lines) before it could be killed; testing the rerun anyway")
    else:
        with open(out_b, "rb") as f:
            tail = f.read()
        partial = not tail.endswith(b"\n")
        info(f"batch b: SIGKILL after {killed_at} complete lines; {before} complete lines on disk"
             f"{', plus a partial last line' if partial else ''}")
        check("batch b: killed before finishing", before < len(lines),
              f"{before} lines of {len(lines)}")
    r = run_batch(inp, out_b)
    check("batch b: the rerun exits 0", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
    rows_b = verify("out_b (killed + rerun)", out_b)
    by_id_b = {x["custom_id"]: x["response"]["body"] for x in rows_b if x.get("custom_id") in specs}
    same = all(by_id_b.get(c, {}).get("choices", [{}])[0].get("message") ==
               by_id_a[c]["choices"][0]["message"] for c in specs)
    check("batch b: same answers as out_a", same, "")

    # A partial last line (as a kill mid-write leaves) is dropped and that request rerun.
    out_c = os.path.join(WORK, "batch-c.jsonl")
    with open(out_a, "rb") as f:
        a_lines = f.read().split(b"\n")
    with open(out_c, "wb") as f:
        f.write(b"\n".join(a_lines[:3]) + b"\n" + a_lines[3][: len(a_lines[3]) // 2])
    cut_id = json.loads(a_lines[3]).get("custom_id")
    r = run_batch(inp, out_c)
    check("batch c: rerun after a partial last line exits 0", r.returncode == 0,
          r.stderr.decode(errors="replace")[-500:])
    rows_c = verify(f"out_c (partial line of {cut_id} dropped)", out_c, want_null_lines=None)
    check("batch c: answers equal out_a",
          all(x["response"]["body"]["choices"][0]["message"] == by_id_a[x["custom_id"]]["choices"][0]["message"]
              for x in rows_c if x.get("custom_id") in specs), "")

    # Shards.
    out_s = [os.path.join(WORK, f"batch-s{i}.jsonl") for i in range(2)]
    ids = []
    for i in range(2):
        r = run_batch(inp, out_s[i], ["--shard", f"{i}/2"])
        check(f"batch shard {i}/2 exits 0", r.returncode == 0, r.stderr.decode(errors="replace")[-500:])
        rows, broken = read_results(out_s[i])
        ids.append([x.get("custom_id") for x in rows])
        bad = [x["custom_id"] for x in rows if x.get("custom_id") in specs
               and x["response"]["body"]["choices"][0]["message"]["content"] != wants[x["custom_id"]]]
        check(f"batch shard {i}/2: answers == linvt ask", not bad and not broken, f"{bad} broken {broken}")
    s0, s1 = set(ids[0]) - {None}, set(ids[1]) - {None}
    check("batch shards: union == all custom_ids, disjoint",
          s0 | s1 == named and not (s0 & s1) and len(ids[0]) + len(ids[1]) == len(lines),
          f"s0 {sorted(s0)} s1 {sorted(s1)}; {len(ids[0])}+{len(ids[1])} results for {len(lines)} lines")
    want0 = set()
    for i, line in enumerate(lines):
        if i % 2 == 0:
            try:
                cid = json.loads(line).get("custom_id")
            except ValueError:
                cid = None
            want0.add(cid)
    check("batch shard 0/2 takes the even 0-based line indices", set(ids[0]) == want0,
          f"got {sorted(map(str, set(ids[0])))}, want {sorted(map(str, want0))}")


# ---------------------------------------------------------------------------------------------


def main():
    global ARGS, WORK, MEDIA, OUTSIDE, NAME
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("LINVT_BIN", "target/debug/linvt"))
    ap.add_argument("--model", default="tests/fixtures/tiny-internvl2")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ARGS = ap.parse_args()
    ARGS.bin = os.path.abspath(ARGS.bin)
    ARGS.model = os.path.abspath(ARGS.model)
    NAME = os.path.basename(ARGS.model.rstrip("/"))
    if not os.access(ARGS.bin, os.X_OK):
        print(f"FAIL setup: {ARGS.bin} is not an executable (build it with `cargo build`)")
        return 1
    t_start = time.time()
    WORK = tempfile.mkdtemp(prefix="linvt-serve-test-")
    MEDIA = os.path.join(WORK, "media")
    OUTSIDE = os.path.join(WORK, "outside")
    os.makedirs(MEDIA)
    os.makedirs(OUTSIDE)
    print(f"openai {openai.__version__}; binary {ARGS.bin}; model {ARGS.model}; work dir {WORK}", flush=True)
    try:
        section("setup: media and expected answers")
        make_media()
        info(f"clip.mp4 {os.path.getsize(path_of('clip.mp4'))} bytes, frame_000.png "
             f"{os.path.getsize(path_of('frames/frame_000.png'))} bytes")
        clip = os.path.getsize(path_of("clip.mp4"))
        main_srv = Server("main", ["--parallel", "4"]).start()
        small = Server("small-limits", ["--max-body-bytes", "100000", "--max-media-bytes", str(clip // 2),
                                        "--media-timeout", "2"]).start()
        test_sdk(main_srv)
        test_errors(main_srv)
        test_http_media(main_srv, small)
        small.stop()
        keyed = Server("api-key", ["--api-key", "secret"]).start()
        test_api_key(keyed)
        keyed.stop()
        queue = Server("queue", ["--parallel", "1", "--queue", "1"]).start()
        test_queue_full(queue)
        queue.stop()
        main_srv.stop()
        load = Server("load", ["--parallel", "4"]).start()
        test_load(load)
        test_plain_disconnect(load)
        load.stop()
        test_sigterm()
        test_batch()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        check("setup / run (no exception)", False, f"{type(e).__name__}: {e}")
    finally:
        for s in SERVERS:
            s.stop()
        failed = [r for r in RESULTS if not r[1]]
        if failed:
            for s in SERVERS:
                info(f"server {s.label} log tail: {s.log_tail(400)!r}")
        if ARGS.keep or failed:
            print(f"work dir kept: {WORK}")
        else:
            shutil.rmtree(WORK, ignore_errors=True)
    print(f"== {len(RESULTS) - len(failed)} passed, {len(failed)} failed in {time.time() - t_start:.1f} s")
    for name, _, detail in failed:
        print(f"FAILED {name}: {short(detail, 400)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
