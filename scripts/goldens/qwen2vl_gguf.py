#!/usr/bin/env python3
"""Golden GGUF files of a tiny random Qwen2-VL, written by llama.cpp's OWN converter and quantizer.

Writes tests/fixtures/qwen2vl-gguf/ (see its README.md and docs/gguf.md). Run with the venv made by
scripts/goldens/setup-venv.sh (plus the converter's extra pins, see requirements.txt):

    .venv-goldens/bin/python scripts/goldens/qwen2vl_gguf.py [--llama-cpp DIR] [--llama-quantize PATH] [--out DIR]

1. A tiny random Qwen2VLForConditionalGeneration (float32, seed SEED) is built from a config; its linear
   input dims are multiples of 256 so that ggml's K-quant blocks (256 values along a row) apply. Every float
   weight is rounded to a float16-representable value, so the F16 GGUF holds exactly the safetensors' values.
   It is saved with save_pretrained in the hub layout to <out>/hf/ (float32 model.safetensors, config.json,
   generation_config.json), together with the tokenizer / processor files of tests/fixtures/qwen2vl-tiny/qwen2vl
   (loaded with AutoProcessor and written back with save_pretrained: same vocabulary and special token ids).
2. llama.cpp's convert_hf_to_gguf.py, from the PyPI sdist llama_cpp_python==LLAMA_CPP_PYTHON (its vendored
   llama.cpp, with that tree's own gguf-py), writes model-f16.gguf (--outtype f16), model-q8_0.gguf
   (--outtype q8_0) and mmproj-f16.gguf (--mmproj --outtype f16).
   One patch, applied to a temporary copy of the converter (never to DIR): the converter identifies a BPE
   pre-tokenizer by the sha256 of the token ids of a fixed test string, and a tiny vocabulary gives a hash
   that no real model has. The patch adds this vocabulary's hash -> "qwen2" to get_vocab_base_pre(), which
   is what llama.cpp's convert_hf_to_gguf_update.py does for a new model; it is legitimate because the
   copied tokenizer.json uses exactly Qwen2's pre-tokenizer (checked below).
3. llama.cpp's llama-quantize (built from the same sdist) writes model-q4_k_m.gguf from model-f16.gguf
   (Q4_K_M); the script checks that it holds Q4_K and Q6_K tensors.
4. Every GGUF is listed (metadata keys without the long token arrays, tensor names / types / shapes) and
   the listing replaces the block between the LISTING markers of <out>/README.md (printed if none).

No network except the optional `pip download` of the sdist (PyPI) when --llama-cpp is not given; no model
hub, ever: the model, tokenizer and processor are built here from configs and the repository's files.
"""
import argparse
import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import safetensors  # noqa: E402
import transformers  # noqa: E402
from transformers import (AutoProcessor, AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration,  # noqa: E402
                          Qwen2VLImageProcessor)

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "tests/fixtures/qwen2vl-tiny/qwen2vl"  # tokenizer + processor files (ids 0..987 BPE, 988.. specials)
DEFAULT_OUT = REPO / "tests/fixtures/qwen2vl-gguf"
LLAMA_CPP_PYTHON = "0.3.36"
# where this fixture's llama-quantize was built (cmake in the sdist's vendor/llama.cpp, see the README)
DEFAULT_QUANTIZE = Path(f"/work/peer-llama/llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/build/bin/llama-quantize")
SEED = 20261204

# Special ids of the copied tokenizer (Qwen2-VL's added tokens in their real order at 988..1001).
ENDOFTEXT, IM_START, IM_END = 988, 989, 990
VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD = 997, 998, 999, 1000, 1001
VOCAB = 1024  # as tests/fixtures/qwen2vl-tiny (1002 tokens, embedding padded to 1024 like the real 151936)

# Sizes: every Linear input dim a multiple of 256 (K-quant super-block).
TEXT_HIDDEN = 256
TEXT_INTERMEDIATE = 512
TEXT_HEADS = 4              # head_dim 64
TEXT_KV_HEADS = 2
MROPE_SECTION = [16, 8, 8]  # rotary pairs per axis (t, h, w): sums to head_dim / 2 = 32
VISION_EMBED = 128
VISION_HEADS = 4            # head_dim 64
VISION_MLP_RATIO = 2        # fc1 512
INIT_STD = 0.02             # transformers' initializer_range
TEXT_LAYERS = 1             # fixture size (see README)
# The converter builds the mmproj name map for blocks 0..depth-1 only, and the merger's second Linear is
# `visual.merger.mlp.2` -> `mm.2` via the per-block pattern "visual.merger.mlp.{bid}": with depth < 3 it fails
# with "Can not map tensor 'visual.merger.mlp.2.bias'". 3 is the smallest depth it converts unpatched.
VISION_DEPTH = 3


def build_config(text_layers, vision_depth, vision_embed):
    vision = dict(depth=vision_depth, embed_dim=vision_embed, hidden_size=TEXT_HIDDEN, hidden_act="quick_gelu",
                  mlp_ratio=VISION_MLP_RATIO, num_heads=VISION_HEADS, in_channels=3, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2VLConfig(
        vision_config=vision, architectures=["Qwen2VLForConditionalGeneration"],
        image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD, vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        vocab_size=VOCAB, hidden_size=TEXT_HIDDEN, intermediate_size=TEXT_INTERMEDIATE,
        num_hidden_layers=text_layers, num_attention_heads=TEXT_HEADS, num_key_value_heads=TEXT_KV_HEADS,
        hidden_act="silu", max_position_embeddings=32768, initializer_range=INIT_STD, rms_norm_eps=1e-6,
        use_cache=True, tie_word_embeddings=False, rope_theta=1000000.0, use_sliding_window=False,
        sliding_window=32768, max_window_layers=text_layers, attention_dropout=0.0,
        rope_scaling={"type": "mrope", "mrope_section": list(MROPE_SECTION)},
        bos_token_id=ENDOFTEXT, eos_token_id=IM_END, vision_token_id=VISION_PAD,
    )


def init_weights(model, gen):
    """Seeded N(0, 0.02) for every matrix / conv kernel / embedding and for biases; norm gains 1 + N(0, 0.02)
    (non-trivial, so that a loader that drops a norm or a bias is caught). Then every value is rounded to
    float16 (round to nearest even) and stored back as float32."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            v = torch.randn(tuple(p.shape), generator=gen, dtype=torch.float64) * INIT_STD
            if p.ndim == 1 and name.endswith(".weight"):  # RMSNorm / LayerNorm gains
                v = v + 1.0
            p.copy_(v.to(torch.float16).to(torch.float32))


def build_model(text_layers, vision_depth, vision_embed, seed):
    cfg = build_config(text_layers, vision_depth, vision_embed)
    assert TEXT_HIDDEN // TEXT_HEADS == 2 * sum(MROPE_SECTION)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    init_weights(model, torch.Generator().manual_seed(seed))
    model.eval()
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    model.generation_config.bos_token_id = ENDOFTEXT
    model.generation_config.pad_token_id = ENDOFTEXT
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]  # as the real generation_config.json
    return model


def save_hf(model, hf, dtype):
    hf.mkdir(parents=True)
    if dtype != torch.float32:  # lossless: every value is float16-representable
        model = model.to(dtype)
    model.save_pretrained(str(hf), safe_serialization=True)
    proc = AutoProcessor.from_pretrained(str(SRC))
    proc.image_processor = Qwen2VLImageProcessor.from_pretrained(str(SRC))  # the slow PIL one, as in SRC
    proc.save_pretrained(str(hf))
    sd = load_file(str(hf / "model.safetensors"))
    for k, v in sd.items():
        assert v.dtype == dtype, k
        assert torch.equal(v.float(), v.to(torch.float16).float()), f"{k} not float16-representable"
        assert k.startswith(("visual.", "model.", "lm_head.")), k
    # the copied tokenizer: same ids, and Qwen2's pre-tokenizer (byte-level BPE with Qwen2's split regex)
    tok = AutoTokenizer.from_pretrained(str(hf))
    src_tok = AutoTokenizer.from_pretrained(str(SRC))
    assert tok.get_vocab() == src_tok.get_vocab() and len(tok) == 1002 <= VOCAB
    for t, i in (("<|endoftext|>", ENDOFTEXT), ("<|im_end|>", IM_END), ("<|image_pad|>", IMAGE_PAD),
                 ("<|video_pad|>", VIDEO_PAD), ("<|vision_start|>", VISION_START)):
        assert tok.convert_tokens_to_ids(t) == i, t
    tj = json.loads((hf / "tokenizer.json").read_text())
    split = tj["pre_tokenizer"]["pretokenizers"][0]
    assert split["pattern"]["Regex"] == QWEN2_REGEX, split
    assert tj["pre_tokenizer"]["pretokenizers"][1]["type"] == "ByteLevel"
    return sd, tok


# Qwen2's pre-tokenizer split regex (tokenizer.json of the Qwen2 / Qwen2-VL family).
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------
def fetch_llama_cpp(work):
    """The sdist from PyPI (ordinary pip client), unpacked; returns its vendor/llama.cpp."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                    f"llama_cpp_python=={LLAMA_CPP_PYTHON}", "-d", str(work)], check=True)
    (sdist,) = work.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz")
    with tarfile.open(sdist) as tf:
        tf.extractall(work, filter="data")
    return work / f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp"


def patched_converter(llama_cpp, work, tok, fixture="qwen2vl-gguf"):
    """Copy convert_hf_to_gguf.py, conversion/ and gguf-py/ to work/ and add this tokenizer's pre-tokenizer
    hash -> "qwen2" to get_vocab_base_pre() (`fixture` names the fixture in the added comment). Returns
    (converter dir, unified diff of the patch, hash)."""
    conv = work / "converter"
    conv.mkdir()
    shutil.copy2(llama_cpp / "convert_hf_to_gguf.py", conv)
    shutil.copytree(llama_cpp / "conversion", conv / "conversion", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(llama_cpp / "gguf-py", conv / "gguf-py", ignore=shutil.ignore_patterns("__pycache__"))
    base = conv / "conversion/base.py"
    src = base.read_text()
    chktxt = re.search(r"^        chktxt = (.*)$", src, re.M).group(1)
    chktxt = eval(chktxt, {})  # a plain string literal of the converter's own source
    chkhsh = hashlib.sha256(str(tok.encode(chktxt)).encode()).hexdigest()
    marker = "        if res is None:\n            logger.warning(\"\\n\")\n"
    assert src.count(marker) == 1, "converter layout changed: get_vocab_base_pre marker not found"
    known = re.findall(r'if chkhsh == "([0-9a-f]{64})":\n\s*# ref: [^\n]*\n\s*res = "([^"]+)"', src)
    assert chkhsh not in dict(known), "hash already known, no patch needed"
    add = (f"        if chkhsh == \"{chkhsh}\":\n"
           f"            # linvt tests/fixtures/{fixture}: tiny byte-level BPE with Qwen2's pre-tokenizer\n"
           f"            res = \"qwen2\"\n")
    new = src.replace(marker, add + marker)
    base.write_text(new)
    import difflib
    diff = "".join(difflib.unified_diff(src.splitlines(True), new.splitlines(True),
                                        "a/conversion/base.py", "b/conversion/base.py", n=2))
    return conv, diff, chkhsh


def run(cmd, env=None, log=None):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if log is not None:
        log.append(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.stdout.write(r.stdout[-20000:])
        sys.stderr.write(r.stderr[-20000:])
        raise SystemExit(f"failed ({r.returncode}): {cmd}")
    return r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------
# listing
# ---------------------------------------------------------------------------------------------
def field_value(gguf, f):
    """Readable value of a GGUFReader field; long arrays as a summary."""
    T = gguf.GGUFValueType
    if f.types[0] == T.ARRAY:
        n = len(f.data)
        et = f.types[1] if len(f.types) > 1 else None
        if et == T.STRING:
            vals = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data]
        if n > 16:
            return f"[{et.name}] x {n}, first {vals[:4]!r}"
        return f"[{et.name if et is not None else ''}] {vals!r}"
    if f.types[0] == T.STRING:
        s = bytes(f.parts[f.data[0]]).decode("utf-8")
        if len(s) > 120:
            return f"STRING ({len(s)} chars) {s[:60]!r}..."
        return f"STRING {s!r}"
    return f"{f.types[0].name} {f.parts[f.data[0]].tolist()[0]!r}"


def listing(gguf, path):
    r = gguf.GGUFReader(str(path))
    out = [f"### {path.name} ({path.stat().st_size} bytes)", "", "Metadata (GGUF header fields `GGUF.*` omitted):", "```"]
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        out.append(f"{name} = {field_value(gguf, f)}")
    out += ["```", "", "Tensors (`ne` = ggml order, fastest-varying first; `rows x cols` = the row-major "
            "array, i.e. ne reversed):", "```"]
    hist = collections.Counter()
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        hist[t.tensor_type.name] += 1
        out.append(f"{t.name:34s} {t.tensor_type.name:5s} ne={ne!s:18s} {' x '.join(str(x) for x in reversed(ne)):14s} "
                   f"{int(t.n_bytes)} B")
    out += ["```", "", "Type histogram: " + ", ".join(f"{k} {v}" for k, v in sorted(hist.items())), ""]
    return "\n".join(out), hist, r


def check_f16_exact(gguf, reader, sd, mmproj):
    """The F16 files hold exactly the safetensors' values (after the converter's documented reshapes)."""
    T = gguf.GGMLQuantizationType
    n = 0
    for t in reader.tensors:
        if t.tensor_type not in (T.F16, T.F32):
            continue
        a = np.asarray(t.data).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
        hf = gguf_to_hf(t.name, mmproj)
        if hf is None:
            continue
        name, sl = hf
        ref = sd[name].numpy()
        if sl is not None:
            ref = sl(ref)
        ref = ref.reshape(a.shape)
        assert np.array_equal(a, ref), t.name
        n += 1
    return n


def gguf_to_hf(name, mmproj):
    """GGUF name -> (HF name, slicing) for the tensors of this fixture (see docs/gguf.md)."""
    m = re.match(r"(v\.)?blk\.(\d+)\.(.*)$", name)
    if not mmproj:
        fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": "lm_head.weight"}
        if name in fixed:
            return fixed[name], None
        i, rest = m.group(2), m.group(3)
        part = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}
        stem, suf = rest.rsplit(".", 1)
        return f"model.layers.{i}.{part[stem]}.{suf}", None
    fixed = {"v.patch_embd.weight": ("visual.patch_embed.proj.weight", lambda w: w[:, :, 0]),
             "v.patch_embd.weight.1": ("visual.patch_embed.proj.weight", lambda w: w[:, :, 1]),
             "v.post_ln.weight": ("visual.merger.ln_q.weight", None), "v.post_ln.bias": ("visual.merger.ln_q.bias", None),
             "mm.0.weight": ("visual.merger.mlp.0.weight", None), "mm.0.bias": ("visual.merger.mlp.0.bias", None),
             "mm.2.weight": ("visual.merger.mlp.2.weight", None), "mm.2.bias": ("visual.merger.mlp.2.bias", None)}
    if name in fixed:
        return fixed[name]
    i, rest = m.group(2), m.group(3)
    stem, suf = rest.rsplit(".", 1)
    qkv = {"attn_q": 0, "attn_k": 1, "attn_v": 2}
    if stem in qkv:
        k = qkv[stem]
        return f"visual.blocks.{i}.attn.qkv.{suf}", (lambda w, k=k: w[k * w.shape[0] // 3:(k + 1) * w.shape[0] // 3])
    part = {"ln1": "norm1", "ln2": "norm2", "attn_out": "attn.proj", "ffn_up": "mlp.fc1", "ffn_down": "mlp.fc2"}
    return f"visual.blocks.{i}.{part[stem]}.{suf}", None



def write_listing(out, block):
    """Puts the generated listing `block` into out/README.md between its LISTING markers (appended
    when there are none; printed when there is no README yet) and prints the fixture's size."""
    readme = out / "README.md"
    if readme.is_file():
        txt = readme.read_text()
        new = re.sub(r"<!-- LISTING:BEGIN.*?<!-- LISTING:END -->", lambda _: block, txt, flags=re.S)
        if new == txt and block not in txt:
            new = txt.rstrip("\n") + "\n\n" + block + "\n"
        readme.write_text(new)
    else:
        print(block)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"fixture dir {out}: {total} bytes")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--llama-cpp", default=None,
                    help=f"unpacked llama.cpp tree of the llama_cpp_python=={LLAMA_CPP_PYTHON} sdist (its vendor/llama.cpp); "
                         "without it the sdist is fetched with `pip download` and unpacked to a temporary directory")
    ap.add_argument("--llama-quantize", default=str(DEFAULT_QUANTIZE),
                    help="llama-quantize binary built (CPU is enough) from that same llama.cpp tree (default %(default)s)")
    ap.add_argument("--text-layers", type=int, default=TEXT_LAYERS)
    ap.add_argument("--vision-depth", type=int, default=VISION_DEPTH)
    ap.add_argument("--vision-embed", type=int, default=VISION_EMBED,
                    help="vision embed_dim (default 256; 128 shrinks the mmproj and the checkpoint a lot)")
    ap.add_argument("--hf-dtype", choices=["float32", "float16"], default="float16",
                    help="dtype of hf/model.safetensors (float16 is lossless here and halves it)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():  # start clean, but keep the hand-written README.md
        if entry.name == "README.md":
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    work = Path(tempfile.mkdtemp(prefix="qwen2vl-gguf-"))
    try:
        llama_cpp = Path(args.llama_cpp) if args.llama_cpp else fetch_llama_cpp(work)
        quantize = Path(args.llama_quantize)
        if not quantize.is_file():
            raise SystemExit(f"{quantize} missing: build it in {llama_cpp} with\n  cmake -B build -DLLAMA_CURL=OFF "
                             "-DCMAKE_BUILD_TYPE=Release && cmake --build build --target llama-quantize")

        # ---- 1. the HF checkpoint
        model = build_model(args.text_layers, args.vision_depth, args.vision_embed, args.seed)
        hf = out / "hf"
        sd, tok = save_hf(model, hf, getattr(torch, args.hf_dtype))
        sd = {k: v.float() for k, v in sd.items()}
        print(f"hf checkpoint: {len(sd)} tensors, {sum(v.numel() for v in sd.values())} parameters")

        # ---- 2. the converter (patched copy) with its own gguf-py
        conv, diff, chkhsh = patched_converter(llama_cpp, work, tok)
        print("converter patch:\n" + diff)
        sys.path.insert(0, str(conv / "gguf-py"))
        import gguf  # noqa: E402  (the sdist's gguf-py)
        env = dict(os.environ, PYTHONPATH=str(conv / "gguf-py"), PYTHONHASHSEED="0")
        logs = []
        common = [sys.executable, conv / "convert_hf_to_gguf.py", hf, "--model-name", "qwen2vl-gguf-tiny"]
        run(common + ["--outtype", "f16", "--outfile", out / "model-f16.gguf"], env, logs)
        run(common + ["--outtype", "q8_0", "--outfile", out / "model-q8_0.gguf"], env, logs)
        run(common + ["--mmproj", "--outtype", "f16", "--outfile", out / "mmproj-f16.gguf"], env, logs)

        # ---- 3. llama-quantize
        qlog = run(["nice", quantize, out / "model-f16.gguf", out / "model-q4_k_m.gguf", "Q4_K_M"])
        build = re.search(r"version: (\S+ \(build \d+, commit \w+\))", qlog, re.I)

        # ---- 4. listings and checks
        parts = []
        hists = {}
        for fname in ("model-f16.gguf", "model-q8_0.gguf", "model-q4_k_m.gguf", "mmproj-f16.gguf"):
            text, hist, reader = listing(gguf, out / fname)
            parts.append(text)
            hists[fname] = hist
            print(text)
            if fname.endswith("f16.gguf"):
                n = check_f16_exact(gguf, reader, sd, fname.startswith("mmproj"))
                print(f"{fname}: {n} F16/F32 tensors equal to the safetensors values (after the converter's reshapes)")
        assert hists["model-q4_k_m.gguf"]["Q4_K"] > 0 and hists["model-q4_k_m.gguf"]["Q6_K"] > 0, hists
        assert hists["model-q8_0.gguf"]["Q8_0"] > 0, hists

        versions = {"llama_cpp_python sdist": LLAMA_CPP_PYTHON, "llama.cpp build (llama-quantize)":
                    build.group(1) if build else "?", "gguf-py": gguf.__version__ if hasattr(gguf, "__version__") else
                    re.search(r'version = "([^"]+)"', (conv / "gguf-py/pyproject.toml").read_text()).group(1),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "safetensors": safetensors.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
        head = ["<!-- LISTING:BEGIN (written by scripts/goldens/qwen2vl_gguf.py; do not edit by hand) -->", "",
                "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; seed {args.seed}; "
                f"text layers {args.text_layers}, vision depth {args.vision_depth}, vision embed_dim "
                f"{args.vision_embed}, hf/model.safetensors {args.hf_dtype}.", "",
                f"Converter patch (pre-tokenizer hash `{chkhsh}` of this vocabulary -> `qwen2`):", "```diff",
                diff.rstrip("\n"), "```", "",
                "File sizes: " + ", ".join(f"`{p.relative_to(out)}` {p.stat().st_size} B"
                                           for p in sorted(out.rglob("*")) if p.is_file() and p.name != "README.md"),
                ""]
        block = "\n".join(head + parts) + "\n<!-- LISTING:END -->"
        write_listing(out, block)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
