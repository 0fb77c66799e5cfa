#!/usr/bin/env bash
# The browser build's tests, on a fresh Debian machine too (installs what is missing):
#  1. wasm-bindgen-test in headless Chromium (WebGPU; SwiftShader without a GPU): the golden
#     fixtures through the JavaScript API, config precedence, bad input;
#  2. the release bundle (scripts/build-web.sh, < 1 MiB);
#  3. the demo page served on 127.0.0.1, checked headlessly: it must report "ok"; the
#     screenshot goes to target/web-demo.png (under CARGO_TARGET_DIR if set) and the page's timings are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Chromium, driven without a profile of its own, leaves a profile directory in TMPDIR per
# launch (5-18 MB each): this run's go in a directory of its own, removed at the end.
TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/linvt-test-web.XXXXXX")
export TMPDIR
server=""
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$TMPDIR"' EXIT
source scripts/web-env.sh
ensure_wasm_target
ensure_wasm_bindgen
ensure_chromium

echo "== clippy for wasm32"
# linvt-web only: the core is linted natively by .ci/run (on wasm32, wgpu handles are !Send,
# so its Arc<GpuContext> trips arc_with_non_send_sync there).
cargo clippy -p linvt-web --no-deps --all-targets --features vlm --target wasm32-unknown-unknown -- -D warnings

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
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done
python3 web/check_demo.py "http://127.0.0.1:$port/" "${CARGO_TARGET_DIR:-target}/web-demo.png"

echo "== video-LLM page (headless Chromium): the tiny model through the folder path"
# The page's files (web/make_check_data.py): the tiny model as a folder gives them, broken
# copies, the model split into a plain host and a LinVT plug-in file, the demo's PNG frames, a
# short WebM the page decodes itself; and the native CPU executor's answers to compare with.
cargo build --bin linvt
linvt="${CARGO_TARGET_DIR:-target}/debug/linvt"
shots="${CARGO_TARGET_DIR:-target}"
check=web/check-data
rm -rf "$check"
mkdir -p "$check"
"$linvt" demo --png "$check/demo.png" --save-frames "$check/frames" >/dev/null
ffmpeg -loglevel error -f lavfi -i testsrc=size=192x144:rate=10 -t 2 -c:v libvpx -b:v 400k \
  "$check/clip.webm"
question="What does the white square do in this video?"
python3 web/make_check_data.py "$check" tests/fixtures/tiny-internvl2 "$question"
native() {
  "$linvt" ask --frames "$check/frames" --backend cpu --question "$question" \
    --max-new-tokens 12 --json "$@" 2>/dev/null
}
native --model tests/fixtures/tiny-internvl2 > "$check/native.json"
native --model "$check/plain" --linvt "$check/linvt.safetensors" > "$check/native-plugin.json"
echo '["native.json", null]' > "$check/vlm-expected.json"
echo '["native-plugin.json"]' > "$check/plugin-expected.json"
page="http://127.0.0.1:$port/vlm.html?check=check-data"
python3 web/check_vlm.py "$page/vlm.json" "$shots/web-vlm.png" "$check/vlm-expected.json"
echo "-- a plain host with a LinVT plug-in file picked beside it"
python3 web/check_vlm.py "$page/plugin.json" "$shots/web-vlm-plugin.png" \
  "$check/plugin-expected.json"
echo "-- as a visitor uses it: the folder and video inputs and the Ask button"
python3 web/check_vlm.py --ui "http://127.0.0.1:$port/vlm.html" "$shots/web-vlm-ui.png" \
  "$check/model" "$check/clip.webm" "$question"

echo "== video-LLM page: a real-size stand-in (InternVL2-1B shape, 1.8 GB bf16) loads a tensor at a time"
# Loading only (asking takes minutes on SwiftShader; README "In the browser" has those numbers).
# The heap may hold the largest tensor's transient copies (f32 and the device's bf16) and the
# page's own ~128 MiB, never the model: the bound is 3 × the largest tensor as f32 + 128 MiB,
# and below the weights' size.
standin="$check/standin"
"$linvt" synth --like internvl2-1b "$standin" >/dev/null
limit=$(python3 - "$standin/model.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
largest = max(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
print(128 * 2**20 + 3 * 2 * largest)  # bf16 → f32 doubles it
PY
)
# Picked through the folder input, not fetched: see check_vlm.py --pick.
python3 web/check_vlm.py --pick "http://127.0.0.1:$port/vlm.html" "$shots/web-vlm-standin.png" \
  "$standin" "$limit"
rm -rf "$standin"
