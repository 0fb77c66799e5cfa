#!/usr/bin/env bash
# Writes the K-quant quantizer goldens of tests/quant.rs with ggml's own C reference quantizers
# (quantize_row_q4_K_ref, quantize_row_q6_K_ref in ggml/src/ggml-quants.c): the `gguf` Python
# package that made the other quantizer goldens (quant_fixture.py) cannot quantize the K formats.
#
# The ggml source is the one vendored in the PyPI sdist llama_cpp_python==0.3.36 (pinned: other
# versions may quantize differently). By default the script downloads it with pip; set
# LLAMA_CPP_SRC to an unpacked llama.cpp directory (the one holding ggml/) to use that instead.
#
#     scripts/goldens/kquant_fixture.sh [OUT_DIR]      # OUT_DIR defaults to tests/fixtures/quant
#
# Writes OUT_DIR/Q4_K.quant_in.f32, Q4_K.quant_out.bin, Q6_K.quant_in.f32, Q6_K.quant_out.bin (see
# kquant_harness.c for the inputs) and adds their entries to the "quantize" list of
# OUT_DIR/manifest.json, keeping every other entry. Needs cc, python3 and, without
# LLAMA_CPP_SRC, pip. The harness is built with -ffp-contract=off: a contracted a*b + c (FMA)
# changes the reference's float sums and with them whole bytes. Run on x86-64 or aarch64 (IEEE
# single precision without excess precision); a second run writes identical files.
set -euo pipefail

PIN="llama_cpp_python==0.3.36"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-tests/fixtures/quant}"
mkdir -p "$OUT"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ -n "${LLAMA_CPP_SRC:-}" ]]; then
    SRC="$LLAMA_CPP_SRC"
else
    pip download --no-binary :all: --no-deps --dest "$TMP/sdist" "$PIN" >&2
    tar -xzf "$TMP"/sdist/llama_cpp_python-*.tar.gz -C "$TMP"
    SRC="$(echo "$TMP"/llama_cpp_python-*/vendor/llama.cpp)"
fi
if [[ ! -f "$SRC/ggml/src/ggml-quants.c" ]]; then
    echo "error: $SRC/ggml/src/ggml-quants.c not found (LLAMA_CPP_SRC must hold ggml/)" >&2
    exit 1
fi

# Only ggml-quants.c: the harness stubs the few ggml.c symbols it refers to, which the reference
# quantizers never call. No -DNDEBUG, so ggml's asserts (nearest_int's range) stay on.
cc -O1 -ffp-contract=off -std=gnu11 \
    -I"$SRC/ggml/include" -I"$SRC/ggml/src" \
    -o "$TMP/kquant_harness" "$HERE/kquant_harness.c" "$SRC/ggml/src/ggml-quants.c" -lm

"$TMP/kquant_harness" "$OUT" > "$TMP/written"

python3 - "$OUT" "$TMP/written" "$PIN" <<'EOF'
import hashlib
import json
import os
import sys

out, written, pin = sys.argv[1:]
path = os.path.join(out, "manifest.json")
doc = {"fixtures": [], "quantize": []}
if os.path.exists(path):
    with open(path) as fh:
        doc = json.load(fh)


def sha(name):
    with open(os.path.join(out, name), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


entries = []
for line in open(written):
    ty, ty_id, n, rows = line.split()
    entries.append(
        {
            "type": ty,
            "id": int(ty_id),
            "n": int(n),
            "rows": int(rows),
            "in_sha256": sha(f"{ty}.quant_in.f32"),
            "out_sha256": sha(f"{ty}.quant_out.bin"),
            "made_by": f"ggml's quantize_row_{ty[:2].lower()}_K_ref ({pin} sdist, cc -O1 -ffp-contract=off) of seeded float32 rows (normal, extreme, zero, constant, outlier, tiny, subnormal-scale, negative-only, positive-only, mixed sub-block scales, integers, zero sub-blocks); scripts/goldens/kquant_fixture.sh",
        }
    )
names = {e["type"] for e in entries}
doc["quantize"] = [e for e in doc.get("quantize", []) if e["type"] not in names] + entries
with open(path, "w") as fh:
    json.dump(doc, fh, indent=1, sort_keys=True)
    fh.write("\n")
print(f"wrote {', '.join(sorted(names))} quantizer fixtures to {out}")
EOF
