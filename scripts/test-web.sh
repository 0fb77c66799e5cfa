#!/usr/bin/env bash
# The browser build's tests, on a fresh Debian machine too (installs what is missing):
#  1. wasm-bindgen-test in headless Chromium (WebGPU; SwiftShader without a GPU): the golden
#     fixtures through the JavaScript API, config precedence, bad input;
#  2. the release bundle (scripts/build-web.sh, < 1 MiB);
#  3. the demo page served on 127.0.0.1, checked headlessly: it must report "ok"; the
#     screenshot goes to target/web-demo.png (under CARGO_TARGET_DIR if set) and the page's timings are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/web-env.sh
ensure_wasm_target
ensure_wasm_bindgen
ensure_chromium

echo "== clippy for wasm32"
# linvt-web only: the core is linted natively by .ci/run (on wasm32, wgpu handles are !Send,
# so its Arc<GpuContext> trips arc_with_non_send_sync there).
cargo clippy -p linvt-web --no-deps --all-targets --target wasm32-unknown-unknown -- -D warnings

echo "== native tests of linvt-web (the small bench shape matches linvt's)"
cargo test -p linvt-web

echo "== browser tests (wasm-bindgen-test, headless Chromium)"
# webdriver.json (Chromium binary and --enable-unsafe-webgpu) is read from the working directory.
(cd linvt-web && cargo test --target wasm32-unknown-unknown -- --nocapture)

echo "== release bundle"
scripts/build-web.sh

echo "== demo page (headless Chromium)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scripts/serve-web.sh "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done
python3 web/check_demo.py "http://127.0.0.1:$port/" "${CARGO_TARGET_DIR:-target}/web-demo.png"
