#!/usr/bin/env python3
"""Optional cross-check of tests/fixtures/internvl-hf-tiny/remote/ (and phi3/remote/, llama/remote/
when present) against OpenGVLab's own InternVL code (InternVLChatModel, InternVisionModel, its
bundled Phi-3 and InternLM2 LLMs, conversation templates, dynamic_preprocess / build_transform),
which is not on PyPI.

    .venv-goldens/bin/python scripts/goldens/check_remote.py --internvl-src PATH/InternVL/internvl_chat

PATH is a checkout of OpenGVLab/InternVL (checked with 2410d1dbf208f0e799459aff9376e5747dbf41a2).
Checks, with golden.safetensors:
  * the remote checkpoint loads into InternVLChatModel with no missing/unexpected keys;
  * InternVL's dynamic_preprocess + build_transform on image.u8 == image.pixel_values (slow hf
    processor), and on the video frames (max_num=1) == video.pixel_values_pil;
  * chat() builds exactly video/image.remote_input_ids (phi3.input_ids, llama.input_ids) and generates
    the remote greedy ids (n/a for the bundled Phi-3 and InternLM2 LLMs: they lost .generate() in
    transformers 4.50, see below);
  * forward() without cache, greedy over 8 steps, gives the greedy ids; its logits at the last
    prompt position == video/image.remote_logits (phi3, llama: every step == *.step_logits);
  * a KV-cache greedy loop through the remote LLM's own cache (what generate() would run) gives the
    same ids and logits (llama/remote: InternLM2's tuple cache).
"""
import argparse
import ast
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def load_golden(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def internvl_preprocess_fns(src):
    """dynamic_preprocess, find_closest_aspect_ratio and build_transform from InternVL's
    internvl/train/dataset.py, without importing that module (it needs cv2, decord, imageio)."""
    import torchvision.transforms as T
    from torchvision.transforms.functional import InterpolationMode

    ds = Path(src) / "internvl/train/dataset.py"
    tree = ast.parse(ds.read_text())
    want = {"find_closest_aspect_ratio", "dynamic_preprocess", "build_transform"}
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in want]
    assert {n.name for n in nodes} == want
    consts = {}
    exec((Path(src) / "internvl/train/constants.py").read_text(), consts)
    ns = {"T": T, "InterpolationMode": InterpolationMode, "Image": Image,
          "IMAGENET_MEAN": consts["IMAGENET_MEAN"], "IMAGENET_STD": consts["IMAGENET_STD"],
          "CLIP_MEAN": consts["CLIP_MEAN"], "CLIP_STD": consts["CLIP_STD"],
          "SIGLIP_MEAN": consts.get("SIGLIP_MEAN"), "SIGLIP_STD": consts.get("SIGLIP_STD")}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(ds), "exec"), ns)
    return ns["dynamic_preprocess"], ns["build_transform"]


def remote_pixels(img_u8, max_num, image_size, dynamic_preprocess, build_transform):
    transform = build_transform(is_train=False, input_size=image_size)
    tiles = dynamic_preprocess(Image.fromarray(img_u8).convert("RGB"), image_size=image_size,
                               use_thumbnail=True, max_num=max_num)
    return torch.stack([transform(t) for t in tiles])


@torch.no_grad()
def kv_cache_greedy(model, pv, ids, steps=8):
    """Prompt through InternVLChatModel.forward(use_cache=True), then one token at a time through
    its language_model with the returned past_key_values (positions follow from the cache length)."""
    out = model(pixel_values=pv, input_ids=ids, attention_mask=torch.ones_like(ids),
                image_flags=torch.ones(pv.shape[0], 1, dtype=torch.long), use_cache=True)
    past, logits, got, rows = out.past_key_values, out.logits[0, -1], [], []
    mask = torch.ones_like(ids)
    for s in range(steps):
        rows.append(logits)
        got.append(int(logits.argmax()))
        if s == steps - 1:
            break
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], 1)
        out = model.language_model(input_ids=torch.tensor([[got[-1]]]), attention_mask=mask, past_key_values=past,
                                   use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
    return got, torch.stack(rows)


def check_dir(remote_dir, G, case, pv_key, ids_key, greedy_key, logits_key, question, n_frames, report,
              kv_loop=False):
    from transformers import AutoTokenizer
    from internvl.model.internvl_chat import InternVLChatConfig, InternVLChatModel

    # transformers 4.57's config repr instantiates the class with no arguments, which InternVL's
    # config refuses (empty llm architecture); tell it there are no defaults.
    InternVLChatConfig.has_no_defaults_at_init = True
    cfg = InternVLChatConfig.from_pretrained(str(remote_dir))
    model, info = InternVLChatModel.from_pretrained(str(remote_dir), config=cfg, use_flash_attn=False,
                                                    torch_dtype=torch.float32, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tok = AutoTokenizer.from_pretrained(str(remote_dir), trust_remote_code=True, use_fast=False)

    pv = G[pv_key]
    captured = {}
    orig_generate = model.generate

    def generate(**kw):
        captured["input_ids"] = kw["input_ids"].clone()
        try:
            out = orig_generate(**kw)
        except AttributeError as e:
            # InternVL's bundled Phi3ForCausalLM predates transformers 4.50, where PreTrainedModel
            # stopped inheriting GenerationMixin: it has no .generate() any more.
            captured["generate_error"] = str(e)
            return kw["input_ids"][:, :1]
        captured["output"] = out.clone()
        return out

    model.generate = generate
    if n_frames:
        q = "".join(f"Frame{i + 1}: <image>\n" for i in range(n_frames)) + question
        npl = [1] * n_frames
    else:
        q, npl = question, [pv.shape[0]]
    gen_cfg = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, num_beams=1)
    with torch.no_grad():
        model.chat(tok, pv, q, gen_cfg, num_patches_list=npl)
    ids_ok = torch.equal(captured["input_ids"][0], G[ids_key])
    gen_ok = "n/a (" + captured["generate_error"] + ")" if "generate_error" in captured else \
        torch.equal(captured["output"][0, :8], G[greedy_key])
    # greedy with the remote forward() itself, no cache: prompt + tokens so far, 8 steps
    want = G[logits_key] if G[logits_key].ndim == 2 else G[logits_key][None]  # (steps known, V)
    ids = G[ids_key][None]
    greedy, diffs = [], []
    with torch.no_grad():
        for step in range(8):
            out = model(pixel_values=pv, input_ids=ids, attention_mask=torch.ones_like(ids),
                        image_flags=torch.ones(pv.shape[0], 1, dtype=torch.long), use_cache=False)
            if step < want.shape[0]:
                diffs.append((out.logits[0, -1] - want[step]).abs().max().item())
            nxt = int(out.logits[0, -1].argmax())
            greedy.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    d = diffs[0]
    fwd_ok = greedy == G[greedy_key].tolist()
    name = remote_dir.relative_to(REPO) if remote_dir.is_relative_to(REPO) else remote_dir
    line = (f"{name} [{case}] chat() prompt ids equal: {ids_ok}; chat() greedy ids equal: {gen_ok}; "
            f"forward() greedy ids equal: {fwd_ok}; forward last-position logits max|diff|: {d:.3g}")
    ok = ids_ok and gen_ok is not False and fwd_ok and d < 1e-4
    if want.shape[0] > 1:
        line += f"; all {want.shape[0]} step logits max|diff|: {max(diffs):.3g}"
        ok = ok and max(diffs) < 1e-4
    if kv_loop:
        kv_ids, kv_rows = kv_cache_greedy(model, pv, G[ids_key][None])
        d_kv = (kv_rows - want).abs().max().item() if want.shape[0] > 1 else (kv_rows[0] - want[0]).abs().max().item()
        kv_ok = kv_ids == G[greedy_key].tolist()
        line += f"; KV-cache loop greedy ids equal: {kv_ok}, logits max|diff|: {d_kv:.3g}"
        ok = ok and kv_ok and d_kv < 1e-4
    report.append(line)
    assert ok, report[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--internvl-src", required=True, help="InternVL checkout's internvl_chat/ directory")
    ap.add_argument("--fixture", default=str(REPO / "tests/fixtures/internvl-hf-tiny"))
    args = ap.parse_args()
    sys.path.insert(0, args.internvl_src)
    torch.set_num_threads(1)
    fx = Path(args.fixture)
    G, meta = load_golden(fx / "golden.safetensors")
    dp, bt = internvl_preprocess_fns(args.internvl_src)
    report = []

    # preprocessing: InternVL's own functions vs the hf processors
    img = G["image.u8"].numpy()
    rp = remote_pixels(img, 6, 56, dp, bt)
    d_img = (rp - G["image.pixel_values"]).abs().max().item()
    report.append(f"image: InternVL dynamic_preprocess+build_transform {tuple(rp.shape)} vs hf slow processor "
                  f"{tuple(G['image.pixel_values'].shape)}: max|diff| {d_img:.3g}")
    frames = G["video.frames_u8"].numpy()
    vp = torch.cat([remote_pixels(f, 1, 56, dp, bt) for f in frames])
    d_pil = (vp - G["video.pixel_values_pil"]).abs().max().item()
    d_tv = (vp - G["video.pixel_values"]).abs().max().item()
    report.append(f"video: InternVL load_video-style transform vs video.pixel_values_pil: max|diff| {d_pil:.3g}; "
                  f"vs hf video processor (video.pixel_values): {d_tv:.3g}")
    assert d_img < 1e-6 and d_pil < 1e-6, report

    check_dir(fx / "remote", G, "video", "video.pixel_values", "video.remote_input_ids", "video.remote_greedy_ids",
              "video.remote_logits", meta["question.video"], frames.shape[0], report)
    check_dir(fx / "remote", G, "image", "image.pixel_values", "image.remote_input_ids", "image.remote_greedy_ids",
              "image.remote_logits", meta["question.image"], 0, report)
    if (fx / "phi3/remote").exists():
        check_dir(fx / "phi3/remote", G, "phi3 video", "video.pixel_values", "phi3.input_ids", "phi3.greedy_ids",
                  "phi3.logits", meta["question.video"], frames.shape[0], report)
    if (fx / "llama/remote").exists():
        check_dir(fx / "llama/remote", G, "llama (InternLM2) video", "video.pixel_values", "llama.input_ids",
                  "llama.greedy_ids", "llama.step_logits", meta["question.video"], frames.shape[0], report,
                  kv_loop=True)
    print("\n".join(report))
    print("OK")


if __name__ == "__main__":
    main()
