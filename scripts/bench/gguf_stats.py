#!/usr/bin/env python3
"""Tensor-type histogram and decode weight bytes per token of a GGUF (gguf-py).

Usage: gguf_stats.py M.gguf [--bytes-only]

Bytes per token counts what one decode step reads, as `linvt bench --decoder` does: every tensor
once, the token embedding in full (it is the tied lm_head; the GGUFs made by make_qwen2_gguf.py
have no output.weight) plus the one embedding row the gather reads.
"""
import sys
from collections import defaultdict

from gguf import GGUFReader


def main() -> None:
    path = sys.argv[1]
    r = GGUFReader(path)
    hist = defaultdict(lambda: [0, 0, 0])  # type -> [tensors, values, bytes]
    per_tensor = defaultdict(set)  # type -> tensor-name kinds
    total = 0
    row = 0
    for t in r.tensors:
        ty = t.tensor_type.name
        h = hist[ty]
        h[0] += 1
        h[1] += int(t.n_elements)
        h[2] += int(t.n_bytes)
        total += int(t.n_bytes)
        kind = t.name.split(".", 2)[-1] if t.name.startswith("blk.") else t.name
        per_tensor[ty].add(kind)
        if t.name == "token_embd.weight":
            row = int(t.n_bytes) // int(t.shape[1])  # shape (ne0, ne1) = (hidden, vocab)
    per_token = total + row
    if "--bytes-only" in sys.argv:
        print(per_token)
        return
    print(f"{path}")
    for ty, (n, vals, nb) in sorted(hist.items(), key=lambda kv: -kv[1][2]):
        print(f"  {ty:6s} {n:4d} tensors {vals / 1e6:9.2f} M values {nb / 1e6:9.2f} MB "
              f"{8 * nb / vals:5.2f} bpw  [{', '.join(sorted(per_tensor[ty]))}]")
    print(f"  weight bytes per decoded token: {per_token} ({per_token / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
