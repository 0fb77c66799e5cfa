#!/usr/bin/env python3
"""Writes the dequantization goldens of tests/quant.rs with the reference `gguf` Python package
(llama.cpp's gguf-py): raw ggml block bytes and the package's own dequantized float32 values.

Make a venv with the pins and run from the repository root:

    python3 -m venv .venv-gguf
    .venv-gguf/bin/pip install gguf==0.19.0 numpy==2.4.6
    .venv-gguf/bin/python scripts/goldens/quant_fixture.py

Writes tests/fixtures/quant/:
  * <TYPE>.bin: the block bytes (7 blocks; 7 rows of 32 values for F32/F16/BF16);
  * <TYPE>.f32: gguf.quants.dequantize(<TYPE>.bin) as little-endian float32;
  * manifest.json: per type its name, ggml id, n values, block count, SHA-256 of both files and how
    the bytes were made.
Where gguf 0.19 can quantize the type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) the bytes come
from gguf.quants.quantize on seeded float32 rows (normal values, extremes, zeros, negative-only,
a constant row, tiny values that give subnormal f16 scales, mixed magnitudes). gguf 0.19 cannot
quantize the K formats (Q4_K, Q5_K, Q6_K), so their bytes are seeded random bytes whose f16 scale
fields (d, dmin) are overwritten with finite values (including zero, negative and subnormal ones):
any bit pattern of the other fields is a valid block. Q8_K is not here: the package does not
dequantize it. Every value is seeded, so a second run writes identical files.

For the quantizers (linvt::quant::quantize), per type that gguf 0.19 quantizes, also:
  * <TYPE>.quant_in.f32: float32 input rows of 32 values, the same 7 kinds as above from their own
    seed (2000 + ggml id, so the files above do not change), plus for Q8_0 and Q4_0 rows of exact
    rounding ties (x/d = k + 0.5 with d a power of two);
  * <TYPE>.quant_out.bin: gguf.quants.quantize(<TYPE>.quant_in.f32, TYPE);
  * manifest.json "quantize": per type its name, ggml id, n, rows and SHA-256 of both files.
"""
import hashlib
import json
import os
import sys
from importlib.metadata import version

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

OUT = os.path.join("tests", "fixtures", "quant")
N_BLOCKS = 7
PINS = {"gguf": "0.19.0", "numpy": "2.4.6"}

QUANTIZED = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# Byte offsets of the f16 scale fields in a block (ggml-common.h).
RANDOM = {"Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def rows(rng: np.random.Generator, width: int) -> np.ndarray:
    """7 rows of `width` float32 values, each row one kind of input."""
    r = [
        rng.standard_normal(width),  # ordinary weights
        rng.standard_normal(width) * 3e4,  # extremes: f16 scales near their top
        np.zeros(width),  # all zeros: d = 0
        -np.abs(rng.standard_normal(width)) - 0.25,  # negative only: min/max on one side
        np.full(width, 1.5),  # constant
        rng.standard_normal(width) * 1e-6,  # tiny: subnormal f16 scales
        rng.standard_normal(width) * np.where(np.arange(width) % 2 == 0, 100.0, 0.01),  # mixed
    ]
    return np.stack(r).astype(np.float32)


def tie_rows(ty: str) -> list[np.ndarray]:
    """Rows whose every value but the scale-setting one is a rounding tie (x/d = k + 0.5, d exact)."""
    halves = np.stack([np.arange(15) + 0.5, -(np.arange(15) + 0.5)], axis=1).reshape(-1)  # 0.5, -0.5, 1.5, ...
    if ty == "Q8_0":
        # amax 127 -> d = 1; amax 63.5 -> d = 0.5 (ties at x = 0.25, -0.25, ...).
        r1 = np.concatenate([[127.0], halves, [126.5]])
        r2 = np.concatenate([[-63.5], halves / 2, [-63.25]])
        return [r1, r2]
    if ty == "Q4_0":
        # max -8 -> d = 1, id = 1: x + 8.5 is k + 0.5 + 8.5, an integer: trunc of a tie. The second
        # row mirrors it (max +8 -> d = -1), and +8 / -8 clip to 15.
        base = np.concatenate([[-8.0], halves[:16], halves[:14], [8.0]])
        return [base, -base]
    return []


def write_quantize(ty: str) -> dict:
    """The quantizer goldens of one type: seeded input rows and the package's bytes for them."""
    qtype = T[ty]
    rng = np.random.default_rng(2000 + int(qtype))
    data = np.concatenate([rows(rng, 32), np.array(tie_rows(ty), dtype=np.float32).reshape(-1, 32)])
    assert data.dtype == np.float32 and data.shape[1] == 32
    with np.errstate(over="ignore"):  # F16's extreme row overflows to +-inf on purpose
        q = gguf.quants.quantize(data, qtype)
    b_in = data.astype("<f4").tobytes()
    b_out = np.ascontiguousarray(q).view(np.uint8).tobytes()
    with open(os.path.join(OUT, f"{ty}.quant_in.f32"), "wb") as fh:
        fh.write(b_in)
    with open(os.path.join(OUT, f"{ty}.quant_out.bin"), "wb") as fh:
        fh.write(b_out)
    return {
        "type": ty,
        "id": int(qtype),
        "n": int(data.size),
        "rows": int(data.shape[0]),
        "in_sha256": hashlib.sha256(b_in).hexdigest(),
        "out_sha256": hashlib.sha256(b_out).hexdigest(),
        "made_by": "gguf.quants.quantize of seeded float32 rows (normal, extreme, zero, negative-only, constant, tiny, mixed; rounding ties for Q8_0/Q4_0)",
    }


def random_blocks(rng: np.random.Generator, ty: str) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[T[ty]]
    blocks = rng.integers(0, 256, size=(N_BLOCKS, type_size), dtype=np.uint8)
    for off in RANDOM[ty]:
        # A few fixed special scales, then seeded normal ones; all finite f16.
        special = [0.0, -0.75, 6.0e-6, 1.0 / 64, 2.0, 0.5, -3.0e-3]
        scales = np.array(special, dtype=np.float32) * (1.0 + 0.1 * rng.random(N_BLOCKS).astype(np.float32))
        if off != 0:
            scales = scales[::-1].copy()  # dmin differs from d per block (zero dmin in the last)
        f16 = scales.astype(np.float16)
        assert np.all(np.isfinite(f16))
        blocks[:, off : off + 2] = f16.view(np.uint8).reshape(N_BLOCKS, 2)
    return blocks


def main() -> int:
    # The pins: other versions may quantize differently (the goldens would change).
    for pkg, want in PINS.items():
        if version(pkg) != want:
            print(f"error: {pkg} {version(pkg)} is installed, {want} is pinned", file=sys.stderr)
            return 1
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    for ty in QUANTIZED + list(RANDOM):
        qtype = T[ty]
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        rng = np.random.default_rng(1000 + int(qtype))
        if ty in QUANTIZED:
            width = max(block_size, 32)
            data = rows(rng, width)
            with np.errstate(over="ignore"):  # F16's extreme row overflows to +-inf on purpose
                q = gguf.quants.quantize(data, qtype)
            raw = np.ascontiguousarray(q).view(np.uint8).reshape(N_BLOCKS, -1)
            how = "gguf.quants.quantize of seeded float32 rows (normal, extreme, zero, negative-only, constant, tiny, mixed)"
        else:
            raw = random_blocks(rng, ty)
            how = "seeded random block bytes with finite f16 d/dmin fields (gguf 0.19 cannot quantize this type)"
        n = raw.size // type_size * block_size
        assert raw.size == n // block_size * type_size
        deq = gguf.quants.dequantize(raw, qtype).astype("<f4", copy=False).reshape(-1)
        assert deq.size == n
        b = raw.tobytes()
        f = deq.tobytes()
        with open(os.path.join(OUT, f"{ty}.bin"), "wb") as fh:
            fh.write(b)
        with open(os.path.join(OUT, f"{ty}.f32"), "wb") as fh:
            fh.write(f)
        manifest.append(
            {
                "type": ty,
                "id": int(qtype),
                "n": int(n),
                "blocks": int(n // block_size),
                "bin_sha256": hashlib.sha256(b).hexdigest(),
                "f32_sha256": hashlib.sha256(f).hexdigest(),
                "made_by": how,
            }
        )
    quantize = [write_quantize(ty) for ty in QUANTIZED]
    doc = {
        "generator": "scripts/goldens/quant_fixture.py",
        "packages": PINS,
        "fixtures": manifest,
        "quantize": quantize,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"wrote {len(manifest)} fixtures and {len(quantize)} quantizer fixtures to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
