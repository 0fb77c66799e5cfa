#!/usr/bin/env bash
# llama.cpp's Vulkan backend beside `linvt bench --decoder qwen2-0.5b --gpu-weights F` on the
# same Vulkan adapter, interleaved, for F in f16 q8_0 q4_0 q4_k.
#
# Builds llama.cpp (the copy bundled in the PyPI sdist llama-cpp-python==0.3.36: llama.cpp
# 0c1e570, ggml 0.25.3) with GGML_VULKAN=ON into build-vulkan/ (llama-bench, llama-quantize,
# test-backend-ops; ~25 min on 2 cores, mostly shader generation), after applying
# llama_cpp_vulkan.patch (Debian bookworm's Vulkan headers 1.3.239 lack VK_EXT_layer_settings;
# test-backend-ops gets our decoder's mat-vec shapes and TBO_TARGET_GFLOP). Writes a
# Qwen2-0.5B-shaped GGUF with seeded random weights (make_qwen2_gguf.py) and quantises it with
# llama-quantize --pure, so every 2-D weight (the tied 151936×896 embedding / lm_head too) has
# the named type:
#   f16, q8_0, q4_0: --pure F16 / Q8_0 / Q4_0
#   q4_k:            --pure Q4_0 --tensor-type ffn_down=q4_k — what our q4_k is: Q4_K needs rows
#                    of a multiple of 256 values, which only ffn_down (4864) has; hidden 896 does
#                    not, so those rows take Q4_0 (llama.cpp's own --pure Q4_K would give them
#                    Q5_0, and Q4_K_M mixes Q5_0/Q6_K/Q8_0; both are made too, as
#                    qwen2-q4_k_pure.gguf / qwen2-q4_k_m.gguf, and benched with EXTRA=1).
# gguf_stats.py prints each GGUF's tensor-type histogram. Then ROUNDS rounds of, per format,
#   GGML_VK_VISIBLE_DEVICES=0 llama-bench -m M -p 0 -n 16 -r 2 -ngl 99 -t THREADS
#   LINVT_BACKEND=vulkan linvt bench --decoder qwen2-0.5b --gpu-weights F --steps 8 --json
# one after the other, and prints decode tokens/s side by side with the weight bytes one decoded
# token reads (ours: the JSON's weight_bytes_per_token; llama.cpp's: the GGUF's tensor bytes, the
# embedding counted once as lm_head plus the one row the lookup reads). After each run a [cpu] line
# says how much CPU other processes took meanwhile (a figure with more than a few % is suspect).
#
# Usage: scripts/bench/llama_cpp_vulkan.sh [WORKDIR]   (default: target/peer-llama)
# Env: SHAPE (qwen2-0.5b, or qwen2-7b: Qwen2-7B's shape, where every row fits Q4_K, so q4_k is
#      --pure Q4_K), LAYERS (keep this many layers of the shape: both sides trimmed alike),
#      THREADS (2), ROUNDS (2), FORMATS ("f16 q8_0 q4_0 q4_k"; bf16 works too), EXTRA (0; 1 adds
#      llama.cpp's q4_k_m and pure q4_k next to our q4_k), LINVT (target/release/linvt),
#      KEEP_LOGS (dir for the raw llama-bench / linvt output; default WORKDIR/vulkan-logs).
# Needs: cmake g++ libvulkan-dev glslc (apt), a Vulkan driver, python3 (venv), PyPI for the
#      first run.
# Caveats: on this project's machines the Vulkan adapter is lavapipe (Mesa's CPU Vulkan driver),
#   a CPU stand-in: these figures compare two Vulkan programs on a CPU, not GPU speed. ggml-vulkan
#   skips CPU-type devices unless GGML_VK_VISIBLE_DEVICES names them (it then silently runs on
#   the CPU backend while still labelled "Vulkan"); the script stops when llama-bench's gpu_info
#   is empty. lavapipe's 128 MiB storage-buffer limit sends llama.cpp's tied lm_head to the CPU
#   backend unless it fits (only at q4_0 / q4_k here); ours is split into row chunks. bookworm's
#   glslc lacks the integer-dot, bf16 and cooperative-matrix extensions, so those shader paths
#   are absent. Keep the machine otherwise idle: the figures move ~2× under load.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${1:-$ROOT/target/peer-llama}"
THREADS="${THREADS:-2}"; ROUNDS="${ROUNDS:-2}"; LINVT="${LINVT:-$ROOT/target/release/linvt}"
FORMATS="${FORMATS:-f16 q8_0 q4_0 q4_k}"; EXTRA="${EXTRA:-0}"
SHAPE="${SHAPE:-qwen2-0.5b}"; LAYERS="${LAYERS:-}"
# GGUF name prefix: the 0.5B shape keeps its first names (qwen2-f32.gguf, …).
P=qwen2; [[ "$SHAPE" == qwen2-0.5b && -z "$LAYERS" ]] || P="$SHAPE${LAYERS:+-l$LAYERS}"
mkdir -p "$WORK"; cd "$WORK"
LOGS="${KEEP_LOGS:-$WORK/vulkan-logs}"; mkdir -p "$LOGS"
if [[ ! -x venv/bin/python ]]; then
  python3 -m venv venv
  venv/bin/pip install --quiet gguf==0.19.0 numpy==2.4.6
fi
PY="$WORK/venv/bin/python"
SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
QUANT="$SRC/build-vulkan/bin/llama-quantize"
BIN="$SRC/build-vulkan/bin"
if [[ ! -x "$BIN/llama-bench" || ! -x "$BIN/test-backend-ops" ]]; then
  if [[ ! -d "$SRC" ]]; then
    venv/bin/pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$WORK"
    tar xzf llama_cpp_python-0.3.36.tar.gz
  fi
  # Idempotent: skip when already applied (a reverse dry run succeeds).
  if ! (cd "$SRC" && patch -p1 -R --dry-run -s -f < "$ROOT/scripts/bench/llama_cpp_vulkan.patch" >/dev/null 2>&1); then
    (cd "$SRC" && patch -p1 -s < "$ROOT/scripts/bench/llama_cpp_vulkan.patch")
  fi
  (cd "$SRC" && cmake -B build-vulkan -DGGML_VULKAN=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON >/dev/null \
     && nice cmake --build build-vulkan -j"$THREADS" --target llama-bench llama-quantize test-backend-ops >/dev/null)
fi
source "$ROOT/scripts/bench/llama_cpp_ggufs.sh"
make_ggufs $FORMATS
if [[ "$EXTRA" == 1 ]]; then
  quant q4_k_pure Q4_K
  [[ -f $P-q4_k_m.gguf ]] || nice "$QUANT" $P-f32.gguf $P-q4_k_m.gguf Q4_K_M "$THREADS" >/dev/null 2>&1
fi
[[ -x "$LINVT" ]] || (cd "$ROOT" && cargo build --release)

# The rows: "label gguf linvt-format" (linvt-format "-": llama.cpp only).
ROWS=()
for f in $FORMATS; do ROWS+=("$f $P-$f.gguf $f"); done
if [[ "$EXTRA" == 1 ]]; then ROWS+=("q4_k_m $P-q4_k_m.gguf -" "q4_k_pure $P-q4_k_pure.gguf -"); fi
for row in "${ROWS[@]}"; do set -- $row; "$PY" "$ROOT/scripts/bench/gguf_stats.py" "$2"; done

export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
busy_jiffies() { read -r _ a b c d e f g h _ < /proc/stat; echo $((a+b+c+f+g+h)) $((a+b+c+d+e+f+g+h)); }
# timed LOG CMD...: runs CMD (stdout to LOG.json, stderr to LOG.err), then appends to LOG.cpu and
# prints to stderr how much of the machine's CPU *other* processes took meanwhile.
timed() {
  local log=$1; shift; local b1 t1 b2 t2 rc=0
  read -r b1 t1 < <(busy_jiffies)
  /usr/bin/time -f "%U %S %e" -o "$log.time" "$@" >"$log.json" 2>"$log.err" || rc=$?
  read -r b2 t2 < <(busy_jiffies)
  awk -v b=$((b2-b1)) -v t=$((t2-t1)) -v hz="$(getconf CLK_TCK)" '{o=b-($1+$2)*hz; if(o<0)o=0;
      printf "[cpu] wall %.0fs, machine busy %.0f%%, other processes %.0f%% of all CPU\n", $3, 100*b/t, 100*o/t}' \
      "$log.time" | tee "$log.cpu" >&2
  return $rc
}
theirs() { # theirs GGUF LOG -> tokens/s
  timed "$2" "$BIN/llama-bench" -m "$1" -p 0 -n 16 -r 2 -ngl 99 -t "$THREADS" -o json
  # gpu_info lists the GPU devices ggml used; empty when ggml-vulkan skipped the CPU-type device.
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))[0]
if not r.get('gpu_info'): sys.exit('llama-bench ran without a Vulkan device (see ' + sys.argv[1] + ')')
print(round(r['avg_ts'], 2))" "$2.json"
}
ours() { # ours FORMAT LOG -> "tokens/s bytes/token"
  LINVT_BACKEND="${LINVT_BACKEND:-vulkan}" timed "$2" "$LINVT" bench --decoder "$SHAPE" \
    ${LAYERS:+--layers $LAYERS} --gpu-weights "$1" --steps 8 --json
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r['decode_tokens_per_s'], 2), r['weight_bytes_per_token'])" "$2.json"
}
declare -A T O OB
for round in $(seq 1 "$ROUNDS"); do
  for row in "${ROWS[@]}"; do
    set -- $row; label=$1; gguf=$2; fmt=$3
    t=$(theirs "$gguf" "$LOGS/llama-$P-$label-r$round"); T[$label]+="$t "
    echo "round $round $label llama.cpp-vulkan $t tok/s" >&2
    if [[ "$fmt" != - ]]; then
      res=$(ours "$fmt" "$LOGS/linvt-$P-$fmt-r$round") || { echo "linvt failed (see $LOGS/linvt-$fmt-r$round.err)" >&2; exit 1; }
      read -r o ob <<<"$res"; O[$label]+="$o "; OB[$label]=$ob
      echo "round $round $label linvt $o tok/s" >&2
    fi
  done
done
dev=$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; print(r['gpu_info'], '| backends', r['backends'], '| build', r['build_commit'])" "$(ls "$LOGS"/llama-$P-*.json | head -1)")
adapter=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['adapter'])" "$(ls "$LOGS"/linvt-$P-*.json | head -1)" 2>/dev/null || echo "-")
echo "llama.cpp Vulkan0: $dev"
echo "linvt adapter:     $adapter"
echo "(tok/s: median of $ROUNDS round(s); per-round values in brackets; bytes: weight bytes read per decoded token)"
med() { "$PY" -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.2f}' if v else '-')" "$@"; }
printf "%-10s %14s %14s %8s %14s %14s   %s\n" format llama.cpp-vk linvt ratio llama-bytes linvt-bytes "per-round llama.cpp | linvt"
for row in "${ROWS[@]}"; do
  set -- $row; label=$1; gguf=$2
  t=$(med ${T[$label]}); o=$(med ${O[$label]:-}); ob=${OB[$label]:--}
  tb=$("$PY" "$ROOT/scripts/bench/gguf_stats.py" "$gguf" --bytes-only)
  ratio=$([[ "$o" != - ]] && "$PY" -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1]):.2f}')" "$t" "$o" || echo -)
  printf "%-10s %14s %14s %8s %14s %14s   [%s| %s]\n" "$label" "$t" "$o" "$ratio" "$tb" "$ob" "${T[$label]}" "${O[$label]:-}"
done
echo "(ratio: linvt ÷ llama.cpp tokens/s; raw output in $LOGS)"
