#!/usr/bin/env python3
"""Headless check of the video-LLM page (web/vlm.html?check=MANIFEST), driven as check_demo.py
drives the demo: the page loads the model's files through the same `loadModel` a picked folder
goes through, asks the manifest's questions, and reports. This script then compares:

  * each answer's prompt and greedy token ids with the native CPU executor's (`linvt ask
    --backend cpu --json` on the same frames, in EXPECTED): identical ids, because the
    browser's WebGPU path and the CPU twin agree to rounding and the tiny model's greedy
    choices have margins far above that (the native GPU tests pin the same equality);
  * each broken folder's refusal message against the text it must contain;
  * that a video decoded by the page was answered and drew a provenance picture;
  * with the manifest's "cache": that the files copied to the browser's model cache (OPFS) and
    read back answer with the same ids;

    python3 web/check_vlm.py URL SHOT EXPECTED.json

With --ui, the page is used as a visitor uses it (the folder and video inputs, the Ask button)
and must show an answer and a provenance picture:

    python3 web/check_vlm.py --ui URL SHOT MODEL_DIR VIDEO QUESTION

With --pick, the model folder is only picked through the folder input and must load with the
wasm heap under HEAP_LIMIT (bytes) and under the weights' own size: the loader reads a tensor
at a time, so its peak is the largest tensor's transient copies, not the model. The real-size
stand-in is checked this way: picked files are read from disk by range, as a visitor's are,
where a manifest's fetched copy first puts the whole 1.8 GB file in Chromium's blob storage
(which refused it on a CI machine: "Failed to fetch"):

    python3 web/check_vlm.py --pick URL SHOT MODEL_DIR HEAP_LIMIT
"""
import json
import os
import sys
import time

from check_demo import drive

TIMEOUT_S = 900  # SwiftShader builds each pipeline on first use; the VLM has many


def pick_and_ask(model_dir, video, question, timeout_s=TIMEOUT_S):
    """The page as a visitor uses it: the model folder through <input webkitdirectory>, the
    video through the file input, the Ask button; done when the stats table fills. With no
    video, done when the model has loaded."""
    def act(wd):
        def element(css):
            found = wd("POST", "/element", {"using": "css selector", "value": css})
            return next(iter(found.values()))
        def js(script):
            return wd("POST", "/execute/sync", {"script": script, "args": []})
        def wait(cond, what):
            deadline = time.time() + timeout_s
            while time.time() < deadline:
                if js("return document.getElementById('error').textContent"):
                    return
                if js("return " + cond):
                    return
                time.sleep(0.5)
            raise RuntimeError(f"timed out waiting for {what}")
        wd("POST", f"/element/{element('#folder')}/value", {"text": os.path.abspath(model_dir)})
        wait("!document.getElementById('ask').disabled", "the model to load")
        if video is None:
            js("if (!document.getElementById('error').textContent) document.title = 'ok'")
            return
        wd("POST", f"/element/{element('#media')}/value", {"text": os.path.abspath(video)})
        js(f"document.getElementById('question').value = {json.dumps(question)}")
        js("document.getElementById('frames').value = '4'")
        wd("POST", f"/element/{element('#ask')}/click", {})
        wait("document.getElementById('stats').rows.length > 0", "the answer")
        js("if (!document.getElementById('error').textContent) document.title = 'ok'")
    return act


def main_ui(url, shot, model_dir, video, question):
    title, v = drive(url, shot, {
        "model": "document.getElementById('model').textContent",
        "answer": "document.getElementById('answer').textContent",
        "stats": "document.getElementById('stats').innerText",
        "picture": "document.getElementById('picture').hidden ? null : document.getElementById('picture').width",
        "error": "document.getElementById('error').textContent",
    }, act=pick_and_ask(model_dir, video, question))
    print(v["model"])
    print(f"answer: {v['answer']!r}")
    print(v["stats"])
    failures = []
    if title != "ok" or v["error"]:
        failures.append(f"the page failed: {v['error'] or title!r}")
    if not v["answer"] or not v["picture"]:
        failures.append("no answer or no provenance picture after picking the folder and the video")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


def heap_failures(info, heap_limit):
    """The wasm heap after loading against its bound (and the weights' own size)."""
    heap = info["heapBytes"]
    ok = heap <= heap_limit and heap < info["weightBytes"]
    print(f"wasm heap {heap / 2**20:.1f} MiB for {info['weightBytes'] / 2**20:.1f} MiB of weights "
          f"(limit {heap_limit / 2**20:.1f} MiB): {'ok' if ok else 'TOO LARGE'}")
    return [] if ok else ["the wasm heap grew past its bound while loading"]


def print_loaded(info, load_ms):
    print(f"loaded {info['name']} ({info['host']}, LinVT {info['linvt']}, weights {info['weights']}) "
          f"on {info['adapter']}: {info['weightBytes']} weight bytes in {load_ms:.0f} ms, "
          f"wasm heap {info['heapBytes'] / 2**20:.1f} MiB after loading")


def main_pick(url, shot, model_dir, heap_limit):
    title, v = drive(url, shot, {
        "info": "document.getElementById('model').dataset.info ?? null",
        "error": "document.getElementById('error').textContent",
    }, act=pick_and_ask(model_dir, None, None))
    if title != "ok" or v["error"] or v["info"] is None:
        print(f"the picked folder did not load: {v['error'] or title!r}", file=sys.stderr)
        return 1
    info = json.loads(v["info"])
    print_loaded(info, info["loadMs"])
    failures = heap_failures(info, int(heap_limit))
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


def main():
    if sys.argv[1] == "--ui":
        return main_ui(*sys.argv[2:7])
    if sys.argv[1] == "--pick":
        return main_pick(*sys.argv[2:6])
    url, shot, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(expected_path) as f:
        expected = json.load(f)
    # Entries: `linvt ask --json` outputs, or their file names beside EXPECTED; null for a
    # video the page decoded itself (no native twin of the browser's decoder).
    here = os.path.dirname(os.path.abspath(expected_path))
    expected = [json.load(open(os.path.join(here, e))) if isinstance(e, str) else e
                for e in expected]
    title, v = drive(url, shot, {"result": "document.getElementById('result').textContent"},
                     timeout_s=TIMEOUT_S)
    if title != "ok":
        print(f"the page did not report success; title: {title!r}", file=sys.stderr)
        return 1
    got = json.loads(v["result"])
    failures = []
    info = got["info"]
    print_loaded(info, got["loadMs"])
    for r in got["refusals"]:
        ok = r["message"] is not None and r["expect"] in r["message"]
        print(f"broken folder refused ({'ok' if ok else 'WRONG'}): {r['message']!r}")
        if not ok:
            failures.append(f"expected a refusal containing {r['expect']!r}, got {r['message']!r}")
    for i, (a, want) in enumerate(zip(got["results"], expected)):
        stages = ", ".join(f"{s} {ms:.0f} ms" for s, ms in a["timings"])
        print(f"question {i}: {a['images']} frames → {a['visualTokens']} visual tokens → "
              f"{a['promptVisualTokens']} in the prompt ({a['videoPath']}), {a['promptTokens']} prompt "
              f"tokens; media decoded in {a['decodeMs']:.0f} ms; {stages}; heap "
              f"{a['wasmHeapBytes'] / 2**20:.1f} MiB")
        print(f"  answer ids {a['tokenIds']} text {a['text']!r}")
        if want is None:
            if not a["tokenIds"] or a["videoPath"] != "linvt":
                failures.append(f"question {i}: the decoded video gave no LinVT answer")
            if not a.get("provenance"):
                failures.append(f"question {i}: no provenance picture")
            continue
        if a["promptIds"] != want["prompt_ids"]:
            failures.append(f"question {i}: prompt ids differ from the native tokenizer's")
        if a["tokenIds"] != want["token_ids"]:
            failures.append(f"question {i}: ids {a['tokenIds']} != native CPU {want['token_ids']}")
        else:
            print("  = the native CPU executor's greedy ids")
    cached = got.get("cached")
    if cached is not None:
        same = cached["tokenIds"] == got["results"][0]["tokenIds"]
        print(f"loaded again from the browser's model cache (OPFS): ids {cached['tokenIds']} "
              f"({'the same' if same else 'DIFFERENT'})")
        if not same:
            failures.append("the model read back from the cache answers differently")
    if len(got["results"]) != len(expected):
        failures.append(f"{len(got['results'])} answers for {len(expected)} questions")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
