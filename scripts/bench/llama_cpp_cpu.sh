#!/usr/bin/env bash
# llama.cpp's CPU backend beside `linvt bench --decoder qwen2-0.5b --backend cpu`, interleaved.
#
# Builds llama.cpp (the copy bundled in the PyPI sdist llama-cpp-python==0.3.36: llama.cpp
# 0c1e570, ggml 0.25.3) for the CPU only, writes a Qwen2-0.5B-shaped GGUF with seeded random
# weights and quantizes it per format (llama_cpp_ggufs.sh: `--pure`, every 2-D weight of the
# format, the tied embedding too), then runs ROUNDS rounds of
#   llama-bench -p 0 -n 32 -r 3 -ngl 0 -t THREADS   and
#   linvt bench --decoder … --backend cpu --cpu-weights FORMAT
# per format, one after the other, and prints decode tokens/s side by side with the ratio.
# Our q8_0/q4_0/q4_k quantize the same seeded weights at load (int8 activations, as llama.cpp).
# At q4_0/q4_k our embedding table (the tied lm_head) is Q8_0 — 896-wide rows take no Q6_K,
# llama.cpp's own Q4_0/Q4_K_M choice there too — so llama.cpp's files get the same table
# (--token-embedding-type q8_0; EMBD= empty gives its --pure table of the format itself).
#
# Usage: scripts/bench/llama_cpp_cpu.sh [WORKDIR]   (default: target/peer-llama)
# Env: THREADS (2), ROUNDS (2), FORMATS ("f32 bf16 f16 q8_0 q4_0 q4_k"), LINVT
# (target/release/linvt). ISA=avx2: what an AVX2-only CPU gets, on this one: llama.cpp built
# for AVX2 (+FMA, F16C; no AVX-512, into build-avx2) beside our int8 kernels' AVX2 form
# (LINVT_CPU_INT8=avx2); FORMATS then defaults to the block formats (our 16-bit and f32
# kernels take AVX-512 where the CPU has it, so those would not compare like with like).
# LINVT_FLAGS: more options for our side, e.g. "--cpu-huge-pages".
# Needs: cmake, g++ (apt-get install -y cmake g++), python3 (venv), network access to PyPI for
# the first run (~10 min build on 2 cores). Keep the machine otherwise idle: the figures move
# ~2× under load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-$ROOT/target/peer-llama}"
THREADS="${THREADS:-2}"; ROUNDS="${ROUNDS:-2}"; LINVT="${LINVT:-$ROOT/target/release/linvt}"
ISA="${ISA:-native}"
case $ISA in
  native) BUILD=build; FLAGS=(-DGGML_NATIVE=ON); FORMATS="${FORMATS:-f32 bf16 f16 q8_0 q4_0 q4_k}" ;;
  avx2) BUILD=build-avx2; export LINVT_CPU_INT8=avx2; FORMATS="${FORMATS:-q8_0 q4_0 q4_k}"
        FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_BMI2=ON) ;;
  *) echo "ISA is native or avx2, not $ISA" >&2; exit 2 ;;
esac
SHAPE=qwen2-0.5b; LAYERS=""; P=qwen2
mkdir -p "$WORK"; cd "$WORK"
if [[ ! -x venv/bin/python ]]; then
  python3 -m venv venv
  venv/bin/pip install --quiet gguf==0.19.0 numpy==2.4.6
fi
PY="$WORK/venv/bin/python"
SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
BIN="$SRC/$BUILD/bin"; QUANT="$BIN/llama-quantize"
if [[ ! -x "$BIN/llama-bench" || ! -x "$QUANT" ]]; then
  # The sdist fetched by its URL in PyPI's simple index: `pip download --no-binary :all:` would
  # build its build dependencies (cmake among them) from source just to read its metadata.
  [[ -d "$SRC" ]] || { [[ -f llama_cpp_python-0.3.36.tar.gz ]] || "$PY" - <<'EOF'
import json, urllib.request
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
name = "llama_cpp_python-0.3.36.tar.gz"
url = next(f["url"] for f in json.load(urllib.request.urlopen(req))["files"] if f["filename"] == name)
urllib.request.urlretrieve(url, name)
EOF
                       tar xzf llama_cpp_python-0.3.36.tar.gz; }
  (cd "$SRC" && cmake -B "$BUILD" -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release "${FLAGS[@]}" >/dev/null \
     && nice cmake --build "$BUILD" -j"$THREADS" --target llama-bench llama-quantize >/dev/null)
fi
source "$ROOT/scripts/bench/llama_cpp_ggufs.sh"
# The 4-bit formats' table as ours: Q8_0.
embd_for() { case $1 in q4_0|q4_k) echo "${EMBD-q8_0}" ;; *) echo "" ;; esac; }
for f in $FORMATS; do EMBD=$(embd_for $f) make_ggufs $f; done
[[ -x "$LINVT" ]] || (cd "$ROOT" && cargo build --release)
printf "%-6s %-6s %12s %12s %7s\n" round format llama.cpp linvt ratio
for round in $(seq 1 "$ROUNDS"); do
  for fmt in $FORMATS; do
    theirs=$("$BIN/llama-bench" -m "$(EMBD=$(embd_for $fmt) gguf_name $fmt)" -p 0 -n 32 -r 3 -ngl 0 -t "$THREADS" -o json 2>/dev/null \
      | "$PY" -c "import json,sys; print(round(json.load(sys.stdin)[0]['avg_ts'], 2))")
    ours=$("$LINVT" --threads "$THREADS" bench --decoder "$SHAPE" --backend cpu --cpu-weights "$fmt" ${LINVT_FLAGS:-} --steps 32 --json 2>/dev/null \
      | "$PY" -c "import json,sys; print(round(json.load(sys.stdin)['decode_tokens_per_s'], 2))")
    printf "%-6s %-6s %12s %12s %7s\n" "$round" "$fmt" "$theirs" "$ours" "$(awk -v a="$ours" -v b="$theirs" 'BEGIN{printf "%.2f", a/b}')"
  done
done
