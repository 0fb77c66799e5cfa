#!/usr/bin/env python3
"""Writes the GGUF fixtures of tests/gguf.rs with the reference `gguf` Python package (llama.cpp's
gguf-py), then reads them back with `gguf.GGUFReader` and records what it sees as JSON.

Make a venv with the pins and run from the repository root:

    python3 -m venv .venv-gguf
    .venv-gguf/bin/pip install gguf==0.19.0 numpy==2.4.6
    .venv-gguf/bin/python scripts/goldens/gguf_fixture.py

Writes tests/fixtures/gguf/:
  * tiny.gguf / tiny.json: GGUF v3, every metadata value type (u8..f64, bool, strings incl.
    non-ASCII, arrays of ints/strings/floats/bools, a nested array), general.alignment = 64, and
    tensors of types F32, F16, BF16, Q8_0, Q4_0 with odd shapes (1-D, 2-D, 3-D);
  * tiny_v2.gguf / tiny_v2.json: the same content with version 2 in the header. gguf 0.19 writes
    only v3 (GGUF_VERSION); v2 has the same layout (v3 only added big-endian files), so the
    writer's version constant is patched for that one file.
The JSON is what GGUFReader reads back: metadata key -> {type, value}, tensors with name, shape in
GGUF order (ne[0] first), ggml type id, offset relative to the data section, n_bytes, SHA-256, the
first 16 bytes (hex) and all bytes (hex) of their data.
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
import gguf.gguf_writer
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "gguf")


def write(path, version):
    gguf.gguf_writer.GGUF_VERSION = version
    w = gguf.GGUFWriter(path, arch="tiny")
    w.add_custom_alignment(64)  # non-default: the reader must honour general.alignment
    w.add_key_value("t.u8", 200, V.UINT8)
    w.add_key_value("t.i8", -100, V.INT8)
    w.add_key_value("t.u16", 60000, V.UINT16)
    w.add_key_value("t.i16", -30000, V.INT16)
    w.add_key_value("t.u32", 4000000000, V.UINT32)
    w.add_key_value("t.i32", -2000000000, V.INT32)
    w.add_key_value("t.u64", 18000000000000000000, V.UINT64)
    w.add_key_value("t.i64", -9000000000000000000, V.INT64)
    w.add_key_value("t.f32", 1.5, V.FLOAT32)
    w.add_key_value("t.f64", -2.25e100, V.FLOAT64)
    w.add_key_value("t.bool_true", True, V.BOOL)
    w.add_key_value("t.bool_false", False, V.BOOL)
    w.add_key_value("t.str", "hello", V.STRING)
    w.add_key_value("t.str_utf8", "héllo — 日本語 🎬", V.STRING)
    w.add_key_value("t.str_empty", "", V.STRING)
    w.add_key_value("t.arr_i32", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("t.arr_u8", [0, 1, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("t.arr_u64", [0, 2**64 - 1], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("t.arr_f32", [0.5, -1.0], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("t.arr_str", ["a", "ünï", ""], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("t.arr_nested", [[1, 2], [3]], V.ARRAY, sub_type=V.ARRAY)

    rng = np.random.default_rng(7)
    # numpy shapes are reversed GGUF order: (3, 64) is ne = [64, 3].
    w.add_tensor("w.f32", rng.standard_normal((3, 64)).astype(np.float32))
    w.add_tensor("b.f32_1d", rng.standard_normal(5).astype(np.float32))
    w.add_tensor("w.f16_3d", rng.standard_normal((2, 3, 4)).astype(np.float16))
    bf = gguf.quants.quantize(rng.standard_normal((2, 7)).astype(np.float32), Q.BF16)
    w.add_tensor("w.bf16", bf, raw_dtype=Q.BF16)
    q8 = gguf.quants.quantize(rng.standard_normal((3, 64)).astype(np.float32), Q.Q8_0)
    w.add_tensor("w.q8_0", q8, raw_dtype=Q.Q8_0)
    q4 = gguf.quants.quantize(rng.standard_normal(32).astype(np.float32), Q.Q4_0)
    w.add_tensor("w.q4_0_1d", q4, raw_dtype=Q.Q4_0)
    q43 = gguf.quants.quantize(rng.standard_normal((2, 2, 32)).astype(np.float32), Q.Q4_0)
    w.add_tensor("w.q4_0_3d", q43, raw_dtype=Q.Q4_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    gguf.gguf_writer.GGUF_VERSION = 3


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8")
    return v


def nested_contents(field):
    # GGUFReader.contents() does not descend into arrays of arrays; rebuild them from the raw
    # parts: each inner array is (type, count, items...) in field.parts after the outer header.
    parts = field.parts
    i = 3 + 1 + 1  # key_len, key, value type, outer item type, outer count
    n = int(parts[4][0])
    out = []
    for _ in range(n):
        sub = int(parts[i][0])
        cnt = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(cnt):
            if sub == V.STRING:
                items.append(parts[i + 1].tobytes().decode("utf-8"))
                i += 2
            else:
                items.append(parts[i][0].item())
                i += 1
        out.append(items)
    return out


def dump(path, json_path):
    r = gguf.GGUFReader(path)
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue  # the reader's pseudo-fields for the header
        t = [int(x) for x in f.types]
        if t[0] == V.ARRAY and len(t) > 1 and t[1] == V.ARRAY:
            val = nested_contents(f)
        else:
            val = jsonable(f.contents())
        entry = {"type": t[0], "value": val}
        if t[0] == V.ARRAY:
            entry["item_type"] = t[1]
        if isinstance(val, float) and not np.isfinite(val):
            sys.exit(f"{name}: non-finite float cannot go to JSON")
        meta[name] = entry
    tensors = []
    raw = open(path, "rb").read()
    for t in r.tensors:
        data = raw[t.data_offset : t.data_offset + t.n_bytes]
        tensors.append(
            {
                "name": t.name,
                "shape": [int(x) for x in t.shape],
                "type": int(t.tensor_type),
                "offset": int(t.data_offset - r.data_offset),
                "n_bytes": int(t.n_bytes),
                "sha256": hashlib.sha256(data).hexdigest(),
                "head_hex": data[:16].hex(),
                "data_hex": data.hex(),  # all of it: the tensors are tiny
            }
        )
    version = int(r.fields["GGUF.version"].parts[0][0])
    doc = {
        "version": version,
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "file_size": len(raw),
        "metadata": meta,
        "tensors": tensors,
    }
    with open(json_path, "w") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    for stem, version in (("tiny", 3), ("tiny_v2", 2)):
        p = os.path.join(OUT, stem + ".gguf")
        write(p, version)
        dump(p, os.path.join(OUT, stem + ".json"))
        print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()
