#!/usr/bin/env bash
# End-to-end tests of `linvt serve` (the OpenAI-compatible HTTP server) and `linvt batch`
# against the tiny fixture model on the CPU, with the official `openai` Python SDK:
# answers equal to `linvt ask` (greedy), streaming, errors and limits, API keys, a queue-full
# 429, a 64-request load with disconnecting clients, SIGTERM draining, and batch files
# (resume after SIGKILL, shards). Takes a couple of minutes on two cores.
#
#   cargo build && scripts/test-serve.sh
#
# Environment: LINVT_BIN (default target/debug/linvt), LINVT_SERVE_VENV (the Python venv with
# the pinned SDK; default target/serve-venv, created on first use), PYTHON (the interpreter
# that makes the venv; default python3). Extra arguments go to scripts/serve_test.py
# (e.g. --keep to keep the temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_VERSION=2.54.0
bin=${LINVT_BIN:-target/debug/linvt}
venv=${LINVT_SERVE_VENV:-target/serve-venv}
python=${PYTHON:-python3}

if [[ ! -x $bin ]]; then
  echo "error: $bin is not an executable; build it first (cargo build) or set LINVT_BIN" >&2
  exit 1
fi
for tool in ffmpeg "$python"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed (needed by the serve tests)" >&2
    exit 1
  fi
done

if [[ ! -x $venv/bin/python ]]; then
  echo "== creating $venv"
  "$python" -m venv "$venv"
fi
if [[ $("$venv/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null || true) != "$OPENAI_VERSION" ]]; then
  echo "== installing openai==$OPENAI_VERSION into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"
fi

# Lower priority: the machine may be shared; the timings printed are informative only.
exec nice -n 5 "$venv/bin/python" scripts/serve_test.py --bin "$bin" --model tests/fixtures/tiny-internvl2 "$@"
