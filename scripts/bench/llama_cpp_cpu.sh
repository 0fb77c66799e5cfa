#!/usr/bin/env bash
# llama.cpp's CPU backend beside `linvt bench --decoder qwen2-0.5b --backend cpu`, interleaved.
#
# Builds llama.cpp (the copy bundled in the PyPI sdist llama-cpp-python==0.3.36: llama.cpp
# 0c1e570, ggml 0.25.3) for the CPU only, writes a Qwen2-0.5B-shaped GGUF with seeded random
# weights (make_qwen2_gguf.py, the `gguf` package pinned below), quantises it to BF16
# (`--pure`: every 2-D weight, the tied embedding too), then runs ROUNDS rounds of
#   llama-bench -p 0 -n 32 -r 3 -ngl 0 -t THREADS   and   linvt bench --decoder … --backend cpu
# for f32 and bf16, one after the other, and prints decode tokens/s side by side.
#
# Usage: scripts/bench/llama_cpp_cpu.sh [WORKDIR]   (default: target/peer-llama)
# Env: THREADS (default 2), ROUNDS (default 2), LINVT (default target/release/linvt).
# Needs: cmake, g++, python3 (venv), network access to PyPI for the first run (~10 min build on
# 2 cores). Keep the machine otherwise idle: the figures move ~2× under load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-$ROOT/target/peer-llama}"
THREADS="${THREADS:-2}"; ROUNDS="${ROUNDS:-2}"; LINVT="${LINVT:-$ROOT/target/release/linvt}"
mkdir -p "$WORK"; cd "$WORK"
if [[ ! -x venv/bin/python ]]; then
  python3 -m venv venv
  venv/bin/pip install --quiet gguf==0.19.0 numpy==2.4.6
fi
SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
BIN="$SRC/build/bin"
if [[ ! -x "$BIN/llama-bench" ]]; then
  venv/bin/pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$WORK"
  tar xzf llama_cpp_python-0.3.36.tar.gz
  (cd "$SRC" && cmake -B build -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON >/dev/null \
     && nice cmake --build build -j"$THREADS" --target llama-bench llama-quantize >/dev/null)
fi
[[ -f qwen2-f32.gguf ]] || nice venv/bin/python "$ROOT/scripts/bench/make_qwen2_gguf.py" qwen2-f32.gguf f32
[[ -f qwen2-bf16.gguf ]] || nice "$BIN/llama-quantize" --pure qwen2-f32.gguf qwen2-bf16.gguf BF16 "$THREADS" >/dev/null 2>&1
[[ -x "$LINVT" ]] || (cd "$ROOT" && cargo build --release)
printf "%-6s %-6s %12s %12s\n" round format llama.cpp linvt
for round in $(seq 1 "$ROUNDS"); do
  for fmt in f32 bf16; do
    theirs=$("$BIN/llama-bench" -m "qwen2-$fmt.gguf" -p 0 -n 32 -r 3 -ngl 0 -t "$THREADS" -o json 2>/dev/null \
      | venv/bin/python -c "import json,sys; print(round(json.load(sys.stdin)[0]['avg_ts'], 2))")
    ours=$("$LINVT" --threads "$THREADS" bench --decoder qwen2-0.5b --backend cpu --cpu-weights "$fmt" --steps 32 --json 2>/dev/null \
      | venv/bin/python -c "import json,sys; print(round(json.load(sys.stdin)['decode_tokens_per_s'], 2))")
    printf "%-6s %-6s %12s %12s\n" "$round" "$fmt" "$theirs" "$ours"
  done
done
