#!/usr/bin/env python3
"""Writes the video-LLM page's check data (scripts/test-web.sh) into CHECK, from the tiny model
in MODEL and the frames/clip already in CHECK (`linvt demo --save-frames CHECK/frames`, ffmpeg's
CHECK/clip.webm):

  model/       the model's files, as a picked folder gives them
  no-config/   the same without config.json          (must be refused: "has no config.json")
  cut/         model.safetensors cut 1000 bytes short (must be refused: "cut short")
  plain/       the model without its LinVT module (config keys and `linVT.*`/`query_tokens` gone)
  linvt.safetensors  that module as a plug-in file (its config in the `linvt_config` metadata)
  vlm.json     the page's manifest: broken folders, then questions about the frames and the clip
  plugin.json  plain/ with linvt.safetensors attached, asked about the frames; then the same
               files copied to the browser's model cache (OPFS), read back and asked again

Plain Python: the safetensors files are split by their header, byte for byte.

    python3 web/make_check_data.py CHECK MODEL "QUESTION"
"""
import json
import os
import shutil
import struct
import sys

FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    return header, meta, data


def write_safetensors(path, tensors, meta):
    """`tensors`: {name: (dtype, shape, bytes)}, written in name order."""
    header, blobs, at = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def listing(check, d):
    return sorted(f"{d}/{f}" for f in os.listdir(os.path.join(check, d)))


def main():
    check, model, question = sys.argv[1], sys.argv[2], sys.argv[3]
    for d in ["model", "no-config", "cut", "plain"]:
        os.makedirs(os.path.join(check, d), exist_ok=True)
    for f in FILES:
        shutil.copy(os.path.join(model, f), os.path.join(check, "model", f))
        if f != "config.json":
            shutil.copy(os.path.join(model, f), os.path.join(check, "no-config", f))
        if f != "model.safetensors":
            shutil.copy(os.path.join(model, f), os.path.join(check, "cut", f))
    with open(os.path.join(model, "model.safetensors"), "rb") as f:
        whole = f.read()
    with open(os.path.join(check, "cut", "model.safetensors"), "wb") as f:
        f.write(whole[:-1000])

    # The LinVT module out of the checkpoint, into a plug-in file; the rest stays a plain host.
    header, meta, data = read_safetensors(os.path.join(model, "model.safetensors"))
    tensors = {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in header.items()}
    is_linvt = lambda k: k.startswith("linVT.") or k == "query_tokens"
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    write_safetensors(os.path.join(check, "linvt.safetensors"),
                      {k: v for k, v in tensors.items() if is_linvt(k)},
                      {"linvt_config": json.dumps(config["linvt_config"])})
    write_safetensors(os.path.join(check, "plain", "model.safetensors"),
                      {k: v for k, v in tensors.items() if not is_linvt(k)}, meta)
    for key in ["linvt_config", "num_video_query_token"]:
        config.pop(key)
    with open(os.path.join(check, "plain", "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for f in FILES:
        if f not in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(model, f), os.path.join(check, "plain", f))

    frames = {"frames": listing(check, "frames"), "kind": "video", "question": question,
              "options": {"maxNewTokens": 12, "provenance": True}}
    manifests = {
        "vlm.json": {
            "bad": [{"model": listing(check, "no-config"), "expect": "has no config.json"},
                    {"model": listing(check, "cut"), "expect": "cut short"}],
            "model": listing(check, "model"),
            "questions": [frames, {"video": "clip.webm", "question": question,
                                   "options": {"numFrames": 4, "maxNewTokens": 6,
                                               "provenance": True}}],
        },
        "plugin.json": {"model": listing(check, "plain"), "linvt": "linvt.safetensors",
                        "questions": [frames], "cache": True},
    }
    for name, m in manifests.items():
        with open(os.path.join(check, name), "w") as f:
            json.dump(m, f)


if __name__ == "__main__":
    main()
