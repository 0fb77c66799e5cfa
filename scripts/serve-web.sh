#!/usr/bin/env bash
# Serves the demo page (web/, with the bundle from scripts/build-web.sh) on 127.0.0.1.
#   scripts/serve-web.sh [PORT]    # default 8000; open http://127.0.0.1:8000/ in a WebGPU browser
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f web/pkg/linvt_web.js ]; then
  echo "web/pkg is missing; run scripts/build-web.sh first" >&2
  exit 1
fi
exec python3 -m http.server --bind 127.0.0.1 --directory web "${1:-8000}"
