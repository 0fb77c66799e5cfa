#!/usr/bin/env bash
# Builds the browser bundles (release, size-optimised) and prints their sizes:
#   web/pkg/      the condense API and demo (index.html), under 1 MiB;
#   web/pkg-vlm/  the whole video-LLM (vlm.html), loaded only by that page.
#   scripts/build-web.sh            # then: scripts/serve-web.sh, open http://127.0.0.1:8000/
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/web-env.sh
ensure_wasm_target
ensure_wasm_bindgen

# Function names (the wasm "name" section, a third of the bundle) only label stack traces: the
# release bundles leave them out; LINVT_WASM_NAMES=1 keeps them for debugging.
names=(--remove-name-section)
if [ "${LINVT_WASM_NAMES:-0}" = 1 ]; then names=(); fi

cargo build -p linvt-web --lib --target wasm32-unknown-unknown --profile wasm-release
rm -rf web/pkg
wasm-bindgen --target web "${names[@]}" --out-dir web/pkg \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm-release/linvt_web.wasm"
wasm="web/pkg/linvt_web_bg.wasm"
if [ "${LINVT_WASM_OPT:-0}" = 1 ]; then
  # Opt-in: binaryen's wasm-opt shrinks the bundle by about a third, but Debian 12's binaryen
  # 108 produces a module whose externref table Chromium rejects at start-up, so it is not the
  # default; use a recent binaryen (and let scripts/test-web.sh check the page). The features
  # are those rustc enables by default for wasm32-unknown-unknown.
  if wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$wasm" -o "$wasm.opt"; then
    echo "wasm-opt: $(stat -c %s "$wasm") → $(stat -c %s "$wasm.opt") bytes"
    mv "$wasm.opt" "$wasm"
  else
    echo "wasm-opt failed; keeping the bundle as wasm-bindgen wrote it"
    rm -f "$wasm.opt"
  fi
fi
bytes=$(stat -c %s "$wasm")
echo "web/pkg: $wasm is $bytes bytes ($((bytes / 1024)) KiB); JS glue $(stat -c %s web/pkg/linvt_web.js) bytes"
# The budget from the issue: the condense API's bundle stays under 1 MiB uncompressed.
if [ "$bytes" -ge $((1024 * 1024)) ]; then
  echo "error: the wasm bundle exceeds 1 MiB" >&2
  exit 1
fi

# The video-LLM's bundle: the same crate with the `vlm` feature (models, the tokenizers crate,
# preprocessing, every host's kernels). Its budget, 6 MiB uncompressed, is what a page may ask a
# visitor to fetch once before a model of hundreds of megabytes; it keeps the bundle from
# silently taking in what only native builds need (see README "In the browser").
cargo build -p linvt-web --lib --features vlm --target wasm32-unknown-unknown --profile wasm-release
rm -rf web/pkg-vlm
wasm-bindgen --target web "${names[@]}" --out-dir web/pkg-vlm \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm-release/linvt_web.wasm"
vlm="web/pkg-vlm/linvt_web_bg.wasm"
bytes=$(stat -c %s "$vlm")
echo "web/pkg-vlm: $vlm is $bytes bytes ($((bytes / 1024)) KiB)"
if [ "$bytes" -ge $((6 * 1024 * 1024)) ]; then
  echo "error: the video-LLM bundle exceeds 6 MiB" >&2
  exit 1
fi
