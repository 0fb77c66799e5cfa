#!/usr/bin/env python3
"""Golden GGUF files of a tiny random InternVL (Qwen2 LLM), written by llama.cpp's OWN converter.

Writes tests/fixtures/internvl-gguf/ (see its README.md and docs/gguf.md). Run with the venv made by
scripts/goldens/setup-venv.sh (the same one as scripts/goldens/qwen2vl_gguf.py):

    .venv-goldens/bin/python scripts/goldens/internvl_gguf.py [--llama-cpp DIR] [--out DIR]

Which checkpoint layout: llama.cpp's converter (convert_hf_to_gguf.py + conversion/, from the PyPI sdist
llama_cpp_python==LLAMA_CPP_PYTHON) converts InternVL only in OpenGVLab's remote-code layout
(`architectures` ["InternVLChatModel"], `llm_config` with `architectures` ["Qwen2ForCausalLM"] -> text class
Qwen2Model (arch `qwen2`), `vision_config` with `architectures` ["InternVisionModel"] -> mmproj class
InternVisionModel). transformers' -hf layout (`InternVLForConditionalGeneration`, no `architectures` in the
sub-configs) stops with "Model InternVLForConditionalGeneration is not supported" for both the decoder and
--mmproj. The mmproj conversion also reads image_mean / image_std from preprocessor_config.json (a real
OpenGVLab checkpoint has one; tests/fixtures/internvl-hf-tiny/remote/ has none).

Why a new checkpoint and not tests/fixtures/internvl-hf-tiny/remote/ itself: the converter maps the projector
`mlp1.{0,1,3}` -> `mm.{0,1,3}` through its per-block name table ("mlp1.{bid}"), built for vision blocks
0..num_hidden_layers-1 only; with that fixture's 2 vision layers it stops with
"ValueError: Can not map tensor 'mlp1.3.bias'". 4 is the smallest vision depth it converts unpatched
(real InternViT-300M has 24). So this script builds the internvl-hf-tiny model again with
scripts/goldens/internvl_hf.py's own code (same Qwen2 text config, same vision config except
num_hidden_layers 4, same init, same seed 26 and draw order), which makes every tensor except vision layers
2 and 3 equal to internvl-hf-tiny's (checked, up to the float16 rounding below), and writes it in the remote
layout under <out>/hf/:
  * every weight rounded to float16 (nearest even) and stored as float16, so the F16 GGUFs hold exactly
    the safetensors' values;
  * config.json = internvl_hf.remote_config() (what internvl-hf-tiny/remote/config.json is) with
    vision num_hidden_layers 4 and torch_dtype float16;
  * tokenizer files + generation_config.json copied from tests/fixtures/internvl-hf-tiny/remote/;
  * preprocessor_config.json in OpenGVLab's style (CLIPImageProcessor keys, ImageNet mean / std, size 56).
Then the converter (a temporary copy with the one-line pre-tokenizer hash patch of qwen2vl_gguf.py) writes
model-f16.gguf (--outtype f16), model-q8_0.gguf (--outtype q8_0) and mmproj-f16.gguf (--mmproj --outtype f16).
Every F16 / F32 tensor is checked equal to its source tensor (after the converter's qkv split / reshapes),
Q8_0 tensors against the source within Q8_0's rounding; listings replace the LISTING block of <out>/README.md.

No network except the optional `pip download` of the sdist (PyPI) when --llama-cpp is not given; no hub.
"""
import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":  # as internvl_hf.py (which re-execs at import otherwise)
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import internvl_hf as H  # noqa: E402  (model construction: configs, init, hf -> remote names)
import qwen2vl_gguf as Q  # noqa: E402  (converter copy + patch, running, listings)

import safetensors  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, InternVLForConditionalGeneration  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "tests/fixtures/internvl-hf-tiny"       # the model this one re-draws (root = hf layout)
SRC_REMOTE = SRC / "remote"                           # its remote layout: tokenizer files copied from here
DEFAULT_OUT = REPO / "tests/fixtures/internvl-gguf"
SEED = H.SEED  # 26, as internvl-hf-tiny
# smallest vision depth the converter maps `mlp1.3` for (its per-block table covers blocks 0..depth-1)
VISION_LAYERS = 4
TOKENIZER_FILES = ["added_tokens.json", "chat_template.jinja", "merges.txt", "special_tokens_map.json",
                   "tokenizer.json", "tokenizer_config.json", "vocab.json", "generation_config.json"]
# OpenGVLab's preprocessor_config.json (InternVL2 / 2.5 / 3 repositories), size scaled to this model.
PREPROCESSOR_CONFIG = {
    "crop_size": H.IMAGE_SIZE, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": H.IMAGENET_MEAN,
    "image_std": H.IMAGENET_STD, "resample": 3, "size": H.IMAGE_SIZE,
}


# ---------------------------------------------------------------------------------------------
# the checkpoint
# ---------------------------------------------------------------------------------------------
def build_model(seed):
    """internvl_hf.build_model(qwen2_config(), gen) with vision num_hidden_layers VISION_LAYERS, every
    value then rounded to float16."""
    cfg = H.internvl_config(H.qwen2_config())
    cfg.vision_config.num_hidden_layers = VISION_LAYERS
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    H.init_weights(model, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    model.eval()
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    return model


def write_checkpoint(model, hf):
    hf.mkdir(parents=True)
    hf_sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    remote = H.convert_hf_to_remote(hf_sd)
    back = H.convert_remote_to_hf(remote, model.config.vision_config.hidden_size)  # transformers' conversion
    assert sorted(back) == sorted(hf_sd) and all(torch.equal(back[k], hf_sd[k]) for k in hf_sd)
    sd16 = {k: v.to(torch.float16).contiguous() for k, v in remote.items()}
    assert all(torch.equal(sd16[k].float(), remote[k]) for k in remote)  # lossless
    save_file(sd16, str(hf / "model.safetensors"), metadata={"format": "pt"})

    cfg = json.loads(json.dumps(H.remote_config(model.config.text_config, "internvl2_5", "Qwen2ForCausalLM")))
    cfg["vision_config"]["num_hidden_layers"] = VISION_LAYERS
    committed = json.loads((SRC_REMOTE / "config.json").read_text())
    committed["vision_config"]["num_hidden_layers"] = VISION_LAYERS
    assert cfg == committed, "internvl_hf.remote_config() no longer matches internvl-hf-tiny/remote/config.json"
    for d in (cfg, cfg["vision_config"], cfg["llm_config"]):
        d["torch_dtype"] = "float16"
    H.write_json(hf / "config.json", cfg)
    for f in TOKENIZER_FILES:
        shutil.copy2(SRC_REMOTE / f, hf / f)
    H.write_json(hf / "preprocessor_config.json", PREPROCESSOR_CONFIG)

    # same tensors as internvl-hf-tiny/remote except vision layers >= 2 (float16-rounded)
    old = load_file(str(SRC_REMOTE / "model.safetensors"))
    same, new = 0, []
    for k, v in sd16.items():
        if k in old:
            assert torch.equal(old[k].to(torch.float16), v), k
            same += 1
        else:
            assert re.match(rf"vision_model\.encoder\.layers\.[2-{VISION_LAYERS - 1}]\.", k), k
            new.append(k)
    assert set(old) <= set(sd16)
    print(f"hf/model.safetensors: {len(sd16)} tensors; {same} equal to internvl-hf-tiny/remote's rounded to "
          f"float16, {len(new)} new (vision layers 2..{VISION_LAYERS - 1})")

    tok = AutoTokenizer.from_pretrained(str(hf))
    tj = json.loads((hf / "tokenizer.json").read_text())
    assert tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == Q.QWEN2_REGEX
    assert tj["pre_tokenizer"]["pretokenizers"][1]["type"] == "ByteLevel"
    for t, i in (("<|endoftext|>", 988), ("<|im_start|>", 989), ("<|im_end|>", 990), ("<img>", 991),
                 ("</img>", 992), ("<IMG_CONTEXT>", 993), ("<video>", 1000)):
        assert tok.convert_tokens_to_ids(t) == i, t
    return {k: v.float() for k, v in sd16.items()}, tok


# ---------------------------------------------------------------------------------------------
# GGUF name -> source name (remote layout), and the -hf layout name for the docs
# ---------------------------------------------------------------------------------------------
TEXT_PARTS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
              "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}
VISION_PARTS = {"ln1": "norm1", "ln2": "norm2", "attn_out": "attn.proj", "ffn_up": "mlp.fc1",
                "ffn_down": "mlp.fc2"}


def gguf_to_hf(name, mmproj):
    """GGUF name -> (remote-layout name, transform of the source array or None)."""
    if not mmproj:
        fixed = {"token_embd.weight": "language_model.model.embed_tokens.weight",
                 "output_norm.weight": "language_model.model.norm.weight",
                 "output.weight": "language_model.lm_head.weight"}
        if name in fixed:
            return fixed[name], None
        i, stem, suf = re.match(r"blk\.(\d+)\.(\w+)\.(weight|bias)$", name).groups()
        return f"language_model.model.layers.{i}.{TEXT_PARTS[stem]}.{suf}", None
    fixed = {"v.class_embd": ("vision_model.embeddings.class_embedding", None),
             "v.position_embd.weight": ("vision_model.embeddings.position_embedding", None),
             "v.patch_embd.weight": ("vision_model.embeddings.patch_embedding.weight", None),
             "v.patch_embd.bias": ("vision_model.embeddings.patch_embedding.bias", None)}
    if name in fixed:
        return fixed[name]
    m = re.match(r"mm\.model\.mlp\.(\d)\.(weight|bias)$", name)
    if m:
        return f"mlp1.{m.group(1)}.{m.group(2)}", None
    i, stem, suf = re.match(r"v\.blk\.(\d+)\.(\w+)\.(weight|bias)$", name).groups()
    if stem in ("ls1", "ls2"):
        assert suf == "weight"
        return f"vision_model.encoder.layers.{i}.{stem}", None
    qkv = {"attn_q": 0, "attn_k": 1, "attn_v": 2}
    if stem in qkv:
        k = qkv[stem]
        return (f"vision_model.encoder.layers.{i}.attn.qkv.{suf}",
                lambda w, k=k: w[k * w.shape[0] // 3:(k + 1) * w.shape[0] // 3])
    return f"vision_model.encoder.layers.{i}.{VISION_PARTS[stem]}.{suf}", None


def remote_to_hf_names(remote_names, vision_dim):
    """remote name -> list of -hf module names (transformers' conversion; qkv -> q/k/v_proj)."""
    out = {}
    for k in remote_names:
        one = H.convert_remote_to_hf({k: torch.zeros(3 * vision_dim if ".qkv." in k else 1)}, vision_dim)
        out[k] = sorted(one)
    return out


def check_tensors(gguf, reader, sd, mmproj, mapping):
    """F16/F32 tensors equal to the source; Q8_0 tensors equal to ggml's reference Q8_0 of the source
    (dequantized). Returns (n exact, q8 stats)."""
    T = gguf.GGMLQuantizationType
    n_exact, q8 = 0, []
    used = set()
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        src, sl = gguf_to_hf(t.name, mmproj)
        ref = sd[src].numpy()
        if sl is not None:
            ref = sl(ref)
        used.add(src)
        mapping.setdefault(t.name, (src, tuple(sd[src].shape), shape))
        if t.tensor_type in (T.F16, T.F32):
            a = np.asarray(t.data).astype(np.float32).reshape(shape)
            assert ref.size == a.size, (t.name, ref.shape, a.shape)
            assert np.array_equal(a, ref.reshape(a.shape)), t.name
            n_exact += 1
        elif t.tensor_type == T.Q8_0:
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
            ref = ref.reshape(a.shape)
            # ggml's reference Q8_0 (ggml-quants.c quantize_row_q8_0_ref): per 32 values d = max|x| / 127,
            # q = roundf(x / d) (half away from zero), d stored as float16; value = q * d16.
            blocks = ref.reshape(-1, 32).astype(np.float32)
            d = np.abs(blocks).max(1, keepdims=True) / np.float32(127)
            with np.errstate(divide="ignore"):
                inv = np.where(d == 0, np.float32(0), np.float32(1) / d)
            x = blocks * inv
            q = np.trunc(x + np.copysign(np.float32(0.5), x))
            want = q * d.astype(np.float16).astype(np.float32)
            assert np.array_equal(a.reshape(-1, 32), want), t.name
            err = np.abs(a.reshape(-1, 32) - blocks)
            q8.append((t.name, float(err.max()), float((err / np.maximum(d, 1e-30)).max())))
        else:
            raise AssertionError(f"unexpected type {t.tensor_type.name} for {t.name}")
    prefix = ("vision_model.", "mlp1.") if mmproj else ("language_model.",)
    missing = sorted(k for k in sd if k.startswith(prefix) and k not in used)
    assert not missing, f"source tensors not in the GGUF: {missing}"
    return n_exact, q8


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--llama-cpp", default=None,
                    help=f"unpacked llama.cpp tree of the llama_cpp_python=={Q.LLAMA_CPP_PYTHON} sdist (its "
                         "vendor/llama.cpp); without it the sdist is fetched with `pip download` to a temp dir")
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

    work = Path(tempfile.mkdtemp(prefix="internvl-gguf-"))
    try:
        llama_cpp = Path(args.llama_cpp) if args.llama_cpp else Q.fetch_llama_cpp(work)

        # ---- 1. the checkpoint (remote layout)
        model = build_model(args.seed)
        hf = out / "hf"
        sd, tok = write_checkpoint(model, hf)
        vision_dim = model.config.vision_config.hidden_size
        del model

        # ---- 2. the converter (patched copy) with its own gguf-py
        conv, diff, chkhsh = Q.patched_converter(llama_cpp, work, tok, fixture="internvl-gguf")
        print("converter patch:\n" + diff)
        sys.path.insert(0, str(conv / "gguf-py"))
        import gguf  # noqa: E402  (the sdist's gguf-py)
        env = dict(os.environ, PYTHONPATH=str(conv / "gguf-py"), PYTHONHASHSEED="0")
        common = [sys.executable, conv / "convert_hf_to_gguf.py", hf, "--model-name", "internvl-gguf-tiny"]
        Q.run(common + ["--outtype", "f16", "--outfile", out / "model-f16.gguf"], env)
        Q.run(common + ["--outtype", "q8_0", "--outfile", out / "model-q8_0.gguf"], env)
        Q.run(common + ["--mmproj", "--outtype", "f16", "--outfile", out / "mmproj-f16.gguf"], env)

        # ---- 3. listings and checks
        parts, hists, mapping = [], {}, {}
        for fname in ("model-f16.gguf", "model-q8_0.gguf", "mmproj-f16.gguf"):
            text, hist, reader = Q.listing(gguf, out / fname)
            parts.append(text)
            hists[fname] = hist
            print(text)
            n, q8 = check_tensors(gguf, reader, sd, fname.startswith("mmproj"), mapping)
            print(f"{fname}: {n} F16/F32 tensors equal to the source tensors (after the converter's reshapes)"
                  + (f"; {len(q8)} Q8_0 tensors = reference Q8_0 of the source (max |err| "
                     f"{max(e for _, e, _ in q8):.3g}, max err/d {max(r for _, _, r in q8):.3f})" if q8 else ""))
            if fname == "model-q8_0.gguf":
                f16_left = [t.name for t in reader.tensors if t.tensor_type == gguf.GGMLQuantizationType.F16]
                print(f"model-q8_0.gguf: tensors left F16 (rows not a multiple of 32): {f16_left or 'none'}")
        assert hists["model-q8_0.gguf"]["Q8_0"] > 0, hists

        hf_names = remote_to_hf_names(sorted(sd), vision_dim)
        print("\nname mapping (GGUF <- remote layout <- -hf module names; shapes: source -> GGUF row-major):")
        for g, (src, sshape, gshape) in mapping.items():
            hfn = hf_names[src]
            m = re.search(r"\.attn_([qkv])\.", g)
            if m:  # one third of the fused qkv
                hfn = [n for n in hfn if f".{m.group(1)}_proj." in n]
            print(f"  {g:24s} <- {src:58s} {list(sshape)!s:15s} -> {gshape!s:15s} | {', '.join(hfn)}")

        versions = {"llama_cpp_python sdist": Q.LLAMA_CPP_PYTHON,
                    "gguf-py": re.search(r'version = "([^"]+)"', (conv / "gguf-py/pyproject.toml").read_text()).group(1),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "safetensors": safetensors.__version__, "numpy": np.__version__,
                    "python": sys.version.split()[0]}
        head = ["<!-- LISTING:BEGIN (written by scripts/goldens/internvl_gguf.py; do not edit by hand) -->", "",
                "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; seed {args.seed}; "
                f"vision layers {VISION_LAYERS}.", "",
                f"Converter patch (pre-tokenizer hash `{chkhsh}` of this vocabulary -> `qwen2`):", "```diff",
                diff.rstrip("\n"), "```", "",
                "File sizes: " + ", ".join(f"`{p.relative_to(out)}` {p.stat().st_size} B"
                                           for p in sorted(out.rglob("*")) if p.is_file() and p.name != "README.md"),
                ""]
        block = "\n".join(head + parts) + "\n<!-- LISTING:END -->"
        Q.write_listing(out, block)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
