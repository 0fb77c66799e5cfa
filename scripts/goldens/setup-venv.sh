#!/usr/bin/env bash
# Create the Python venv used by scripts/goldens/*.py (golden data for tests/fixtures/internvl-hf-tiny).
#
#   scripts/goldens/setup-venv.sh [VENV_DIR]      (default: <repo>/.venv-goldens)
#
# Everything comes from PyPI, pinned: requirements.txt (top level) constrained by requirements.lock
# (every transitive package). Nothing is downloaded from a model hub, ever.
#
# torch: PyPI's Linux x86_64 wheel is the CUDA build and depends on the nvidia-* wheels (~3 GB).
# `pip install --no-deps torch` does NOT give a working CPU-only torch: `import torch` fails with
# "libcublas.so.*[0-9] not found" (torch/__init__.py preloads the CUDA libraries), and the CPU-only
# wheels are not on PyPI. So torch is installed normally, nvidia-* wheels included; the generators
# only ever use the CPU.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.venv-goldens}"
python="${PYTHON:-python3}"

"$python" - <<'EOF'
import sys
if sys.version_info[:2] != (3, 11):
    print(f"note: the lock was made with CPython 3.11, this is {sys.version.split()[0]}", file=sys.stderr)
EOF

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -c "$here/requirements.lock"
"$venv/bin/python" - <<'EOF'
import torch, transformers, peft, safetensors, numpy, PIL, torchvision
from transformers import (InternVLForConditionalGeneration, InternVLProcessor, GotOcr2ImageProcessor,
                          Phi3ForCausalLM)
print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| transformers",
      transformers.__version__, "| peft", peft.__version__, "| safetensors", safetensors.__version__,
      "| numpy", numpy.__version__, "| pillow", PIL.__version__)
EOF
echo "venv ready: $venv"
