# Sourced by llama_cpp_cpu.sh and llama_cpp_vulkan.sh: the random-weight GGUFs both compare on.
# Needs P (file prefix), SHAPE, LAYERS, PY, ROOT, QUANT (llama-quantize), THREADS; EMBD (optional:
# a type for the token embedding / tied lm_head, e.g. q8_0 as ours has at the 4-bit formats;
# the files are then named $P-FORMAT-embd-EMBD.gguf).
#
# make_ggufs FORMATS...: $P-f32.gguf (make_qwen2_gguf.py, seeded), then one file per format by
# llama-quantize --pure, so every 2-D weight (the tied embedding / lm_head too) has that type:
#   f16, bf16, q8_0, q4_0: that type;
#   q4_k: what our q4_k is — Q4_K where rows are a multiple of 256, Q4_0 elsewhere (at the
#         0.5B shape only ffn_down's 4864-wide rows fit; at 7B all do, so --pure Q4_K).
gguf_name() { echo "$P-$1${EMBD:+-embd-$EMBD}.gguf"; } # gguf_name FORMAT
quant() { # quant FORMAT TYPE [extra llama-quantize args]
  local out; out=$(gguf_name "$1"); local ty=$2; shift 2
  [[ -f "$out" ]] || nice "$QUANT" --pure ${EMBD:+--token-embedding-type $EMBD} "$@" $P-f32.gguf "$out" "$ty" "$THREADS" >/dev/null 2>&1
}
make_ggufs() {
  [[ -f $P-f32.gguf ]] || nice "$PY" "$ROOT/scripts/bench/make_qwen2_gguf.py" $P-f32.gguf f32 "$SHAPE" $LAYERS
  for f in "$@"; do
    case $f in
      f32) ;;
      f16) quant f16 F16 ;; bf16) quant bf16 BF16 ;; q8_0) quant q8_0 Q8_0 ;; q4_0) quant q4_0 Q4_0 ;;
      q4_k) if [[ "$SHAPE" == qwen2-0.5b ]]; then quant q4_k Q4_0 --tensor-type ffn_down=q4_k
            else quant q4_k Q4_K; fi ;;
      *) echo "unknown format $f" >&2; return 1 ;;
    esac
  done
}
