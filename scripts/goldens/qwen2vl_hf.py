#!/usr/bin/env python3
"""Golden data for tiny random-weight Qwen2-VL and Qwen2.5-VL models, computed by Hugging Face
transformers' own implementation (Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration,
Qwen2VLProcessor / Qwen2_5_VLProcessor with the slow PIL Qwen2VLImageProcessor and Qwen2VLVideoProcessor).

Writes tests/fixtures/qwen2vl-tiny/{qwen2vl,qwen25vl}/ (see tests/fixtures/qwen2vl-tiny/README.md). Run
with the venv made by scripts/goldens/setup-venv.sh:

    .venv-goldens/bin/python scripts/goldens/qwen2vl_hf.py [--out DIR]

No network, no model hub: models, tokenizer and processors are built here from configs, with the
byte-level BPE vocabulary of tests/fixtures/tiny-internvl2 and Qwen2-VL's special tokens re-declared
at ids 988.. (same order as the real ids 151643..).

Each model (float32, eager attention, its own seeded weights) is saved with save_pretrained in the
hub layout (flat config + rope_scaling; weights `visual.*`, `model.*`, `lm_head.weight`). Sizes are
deliberately not powers of two: vision width 40, 2 heads (head_dim 20), Qwen2-VL MLP 80 (mlp_ratio 2) /
Qwen2.5-VL intermediate 56; LLM hidden 48, 4 heads / 2 KV heads (head_dim 12, mrope_section [2, 2, 2]),
MLP 96; 2 layers each. Three cases are run through the processor + chat template + model:
  * image: one 90x130 RGB image (smart_resize -> 84x112, grid 1x6x8, 12 LLM tokens);
  * video: an odd number of non-square frames, 5 x 70x98, given directly (no frame sampling; Qwen2.5-VL
    with fps=1: second_per_grid_ts = 2); the processor repeats the last frame to 6, resizes to 56x112
    (grid 3x4x8, 24 tokens);
  * multi: image + video + a second, smaller image (40x50 -> 56x84) in one prompt, add_vision_id.
Goldens: raw uint8 inputs, processor outputs, 3-axis position ids and rope deltas, vision tower
intermediates (patch embedding, first block) and output, window index (2.5), logits of 8 greedy steps
with a KV cache, greedy ids. The generator also checks every golden against an independent float64
re-implementation from the saved safetensors (ref_* below; it follows docs/qwen2vl-reference.md).
"""
import argparse
import copy
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

import safetensors  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SRC_TOKENIZER = REPO / "tests/fixtures/tiny-internvl2"
# Weight seeds, chosen by --scan 40 (qwen2vl 1..40, qwen25vl 101..140) for the widest smallest top1-top2
# logit gap over the greedy steps of all three cases.
SEEDS = {"qwen2vl": 22, "qwen25vl": 123}
SCAN_BASE = {"qwen2vl": 0, "qwen25vl": 100}
GREEDY_STEPS = 8
VOCAB = 1024
FIRST_SPECIAL_ID = 988  # ids 0..987: byte-level BPE vocabulary of tiny-internvl2

# Qwen2-VL's added tokens in their real order (real id = 151643 + k, here 988 + k).
QWEN2VL_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
# Qwen2.5-VL's tokenizer adds Qwen2.5's tool / FIM tokens after them (151657.. , not special).
QWEN25VL_EXTRA = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                  "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
ID = {t: FIRST_SPECIAL_ID + k for k, t in enumerate(QWEN2VL_SPECIAL)}
ENDOFTEXT, IM_START, IM_END = ID["<|endoftext|>"], ID["<|im_start|>"], ID["<|im_end|>"]
VISION_START, VISION_END, VISION_PAD = ID["<|vision_start|>"], ID["<|vision_end|>"], ID["<|vision_pad|>"]
IMAGE_PAD, VIDEO_PAD = ID["<|image_pad|>"], ID["<|video_pad|>"]

# Qwen2-VL-*-Instruct's chat template (tokenizer_config.json "chat_template" = chat_template.json of
# Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct; Qwen2.5-VL-*-Instruct ship the same text): default system
# message, <|vision_start|><|image_pad|><|vision_end|> per image, optional "Picture k: " / "Video k: ".
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Processor sizes: the real min_pixels (56*56) and a small max_pixels = 14 * 28*28 so that the 90x130
# image takes smart_resize's max_pixels branch (round gives 84x140 = 11760 > 10976 -> floor branch -> 84x112).
MIN_PIXELS = 56 * 56
MAX_PIXELS = 14 * 28 * 28
IMAGE_HW = (90, 130)   # -> 84x112 (max_pixels branch), grid (1, 6, 8)
IMAGE2_HW = (40, 50)   # -> 56x84 (min_pixels branch), grid (1, 4, 6)
# An odd frame count: the processors repeat the last frame to 6 = 3 temporal groups. (Frame sampling,
# do_sample_frames, always returns a multiple of temporal_patch_size, so the 5 frames are given directly.)
FRAMES_THW = (5, 70, 98)  # -> 56x112: round(2.5) = 2 and round(3.5) = 4 (round half to even!)
VIDEO_FPS_25 = 1.0     # Qwen2.5-VL: the 5 frames with fps 1 -> second_per_grid_ts = 2 / 1 = 2.0
TOKENS_PER_SECOND = 2

# Model sizes: deliberately not powers of two (the vision head_dim must be divisible by 4 for the 2-D
# rotary: hd/4 frequencies per axis; the LLM mrope_section must sum to head_dim / 2).
VISION_WIDTH = 40          # embed_dim (Qwen2-VL) / hidden_size (Qwen2.5-VL)
VISION_HEADS = 2           # head_dim 20 -> 5 rotary frequencies per axis
QWEN2VL_MLP_RATIO = 2      # fc1 80
QWEN25VL_INTERMEDIATE = 56
LLM_HIDDEN = 48
LLM_HEADS = 4              # head_dim 12 -> 6 rotary pairs
LLM_KV_HEADS = 2
LLM_INTERMEDIATE = 96
MROPE_SECTION = [2, 2, 2]  # frequency pairs per axis (t, h, w): 2 + 2 + 2 = 6 = head_dim / 2

IMAGE_QUESTION = "Describe this image in detail."
VIDEO_QUESTION = "What is the red square doing?"
MULTI_QUESTION = "Which picture matches the clip?"


# ---------------------------------------------------------------------------------------------
# tokenizer / processor
# ---------------------------------------------------------------------------------------------
def build_tokenizer(qwen25):
    """Qwen2TokenizerFast: tiny-internvl2's BPE (ids 0..987, Qwen2 pre-tokenizer regex) with Qwen2-VL's
    added tokens (and Qwen2.5-VL's extra ones) and Qwen2-VL's tokenizer_config.json fields."""
    added = [(t, True) for t in QWEN2VL_SPECIAL] + ([(t, False) for t in QWEN25VL_EXTRA] if qwen25 else [])
    tmp = Path(tempfile.mkdtemp(prefix="qwen2vl-tok-"))
    try:
        tj = json.loads((SRC_TOKENIZER / "tokenizer.json").read_text())
        assert len(tj["model"]["vocab"]) == FIRST_SPECIAL_ID
        tj["added_tokens"] = [dict(id=FIRST_SPECIAL_ID + k, content=t, single_word=False, lstrip=False, rstrip=False,
                                   normalized=False, special=sp) for k, (t, sp) in enumerate(added)]
        (tmp / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
        shutil.copy(SRC_TOKENIZER / "vocab.json", tmp)
        shutil.copy(SRC_TOKENIZER / "merges.txt", tmp)
        tc = {
            "added_tokens_decoder": {str(FIRST_SPECIAL_ID + k): dict(content=t, lstrip=False, normalized=False,
                                                                     rstrip=False, single_word=False, special=sp)
                                     for k, (t, sp) in enumerate(added)},
            "additional_special_tokens": QWEN2VL_SPECIAL[1:],
            "bos_token": None, "chat_template": QWEN2VL_CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>",
            "padding_side": "left", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(tc, ensure_ascii=False))
        tok = AutoTokenizer.from_pretrained(str(tmp))
    finally:
        shutil.rmtree(tmp)
    for k, (t, _) in enumerate(added):
        assert tok.convert_tokens_to_ids(t) == FIRST_SPECIAL_ID + k, t
    assert len(tok) == FIRST_SPECIAL_ID + len(added) <= VOCAB
    return tok


def build_processor(tok, qwen25):
    image_processor = Qwen2VLImageProcessor(
        do_resize=True, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, resample=PIL.Image.BICUBIC, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True, patch_size=14, temporal_patch_size=2,
        merge_size=2,
    )  # image_mean / image_std: OpenAI CLIP (class defaults, as in the real preprocessor_config.json)
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14, temporal_patch_size=2, merge_size=2,
        min_frames=4, max_frames=768, do_sample_frames=False,
    )
    cls = Qwen2_5_VLProcessor if qwen25 else Qwen2VLProcessor
    return cls(image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
               chat_template=QWEN2VL_CHAT_TEMPLATE)


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def text_kwargs():
    """Text fields as the hub config.json has them (flat, next to vision_config): Qwen2-VL-7B-Instruct's
    set of keys with tiny values. rope_scaling {"type": "mrope"} as published; transformers rewrites
    it to type/rope_type "default" (+ mrope_section) when it builds the config."""
    return dict(
        vocab_size=VOCAB, hidden_size=LLM_HIDDEN, intermediate_size=LLM_INTERMEDIATE, num_hidden_layers=2,
        num_attention_heads=LLM_HEADS, num_key_value_heads=LLM_KV_HEADS, hidden_act="silu", max_position_embeddings=32768, initializer_range=0.02,
        rms_norm_eps=1e-6, use_cache=True, tie_word_embeddings=False, rope_theta=1000000.0,
        use_sliding_window=False, sliding_window=32768, max_window_layers=2, attention_dropout=0.0,
        rope_scaling={"type": "mrope", "mrope_section": list(MROPE_SECTION)},
        bos_token_id=ENDOFTEXT, eos_token_id=IM_END, vision_token_id=VISION_PAD,
    )


def token_kwargs():
    return dict(image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD, vision_start_token_id=VISION_START,
                vision_end_token_id=VISION_END)


def qwen2vl_config():
    vision = dict(depth=2, embed_dim=VISION_WIDTH, hidden_size=LLM_HIDDEN, hidden_act="quick_gelu",
                  mlp_ratio=QWEN2VL_MLP_RATIO, num_heads=VISION_HEADS, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    cfg = Qwen2VLConfig(vision_config=vision, architectures=["Qwen2VLForConditionalGeneration"],
                        **token_kwargs(), **text_kwargs())
    return cfg


def qwen25vl_config():
    vision = dict(depth=2, hidden_size=VISION_WIDTH, hidden_act="silu", intermediate_size=QWEN25VL_INTERMEDIATE,
                  num_heads=VISION_HEADS, in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  tokens_per_second=TOKENS_PER_SECOND, window_size=56, out_hidden_size=LLM_HIDDEN,
                  fullatt_block_indexes=[1])
    cfg = Qwen2_5_VLConfig(vision_config=vision, architectures=["Qwen2_5_VLForConditionalGeneration"],
                           **token_kwargs(), **text_kwargs())
    return cfg


def init_weights(model, gen):
    """Deterministic, deliberately large init (transformers' is std 0.02): fan-in scaled matrices, q/k
    (and the q/k rows of the vision tower's fused qkv) with gain 2 so attention is far from uniform,
    lm_head gain 4 so logits are spread and greedy choices have wide margins (rows >= 988 x0.05)."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape = tuple(p.shape)

            def randn(std, mean=0.0):
                return torch.randn(shape, generator=gen, dtype=torch.float64) * std + mean

            if p.ndim == 1 and name.endswith(".weight"):  # LayerNorm / RMSNorm gains
                v = randn(0.2, 1.0)
            elif p.ndim == 1:  # biases (incl. LayerNorm biases)
                v = randn(0.1)
            elif "embed_tokens" in name:
                v = randn(1.0)
            else:  # Linear / Conv3d weights
                fan_in = math.prod(shape[1:])
                gain = 1.0
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    gain = 2.0
                if name.endswith("lm_head.weight"):
                    gain = 4.0
                v = randn(gain / math.sqrt(fan_in))
                if name.endswith("attn.qkv.weight"):  # vision: rows q | k | v, boost q and k
                    v[: 2 * shape[1]] *= 2.0
                if name.endswith("lm_head.weight"):
                    v[FIRST_SPECIAL_ID:] *= 0.05
            p.copy_(v.to(p.dtype))


def build_model(kind, gen):
    if kind == "qwen2vl":
        cfg, cls = qwen2vl_config(), Qwen2VLForConditionalGeneration
    else:
        cfg, cls = qwen25vl_config(), Qwen2_5_VLForConditionalGeneration
    vhd = VISION_WIDTH // VISION_HEADS
    assert VISION_WIDTH % VISION_HEADS == 0 and vhd % 4 == 0, "vision head_dim must split into h/w rotary halves"
    hd = LLM_HIDDEN // LLM_HEADS
    assert LLM_HIDDEN % LLM_HEADS == 0 and LLM_HEADS % LLM_KV_HEADS == 0 and sum(MROPE_SECTION) * 2 == hd
    model = cls._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    init_weights(model, gen)
    model.eval()
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    model.generation_config.bos_token_id = ENDOFTEXT
    model.generation_config.pad_token_id = ENDOFTEXT
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]  # as the real generation_config.json
    return model


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def make_image(h, w):
    """uint8 RGB (H, W, 3): smooth colour field, diagonal stripes, a dark disc, a blue bar."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 11.0) * np.cos(y / 13.0)
    g = 255 * x / (w - 1) * 0.7 + 40 * ((x + y) % 9 < 4)
    b = 255 * (1 - y / (h - 1)) * 0.8 + 30 * np.cos((x - 2 * y) / 5.0)
    img = np.stack([r, g, b], -1)
    img[(x - 0.65 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.18 * h) ** 2] = (25, 30, 35)
    img[int(0.72 * h):int(0.85 * h), int(0.1 * w):int(0.6 * w)] = (20, 60, 220)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_image2(h, w):
    """uint8 RGB (H, W, 3): 4-px checker in yellow/purple with a green cross."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.where((((x // 4) + (y // 4)) % 2 == 0)[..., None], np.array([230, 210, 40]), np.array([90, 30, 140]))
    img[h // 2 - 3:h // 2 + 3, :] = (30, 200, 60)
    img[:, w // 3 - 3:w // 3 + 3] = (30, 200, 60)
    return img.astype(np.uint8)


def make_frames(t, h, w):
    """uint8 RGB (T, H, W, 3): gradients, a 3-px checker, a red square moving right/down."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        r = (x * 255 // (w - 1) + 30 * i) % 256
        g = (y * 255 // (h - 1) + 20 * i) % 256
        b = np.where(((x // 3) + (y // 3) + i) % 2 == 0, 200, 40)
        f = np.stack([r, g, b], -1).astype(np.uint8)
        x0, y0 = 4 + 13 * i, 3 + 8 * i
        f[y0:y0 + 16, x0:x0 + 16] = (230, 20, 20)
        frames[i] = f
    return frames


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def vision_kwargs(inp):
    return {k: inp[k] for k in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw",
                                "second_per_grid_ts") if k in inp}


def rope_index(model, inp):
    kw = {}
    if "second_per_grid_ts" in inp:
        kw["second_per_grid_ts"] = inp["second_per_grid_ts"]
    return model.model.get_rope_index(inp["input_ids"], inp.get("image_grid_thw"), inp.get("video_grid_thw"),
                                      attention_mask=inp["attention_mask"], **kw)


@torch.no_grad()
def greedy(model, inp, steps=GREEDY_STEPS):
    """Prompt forward (positions from get_rope_index inside the model), then `steps` greedy tokens with
    the KV cache, each decode step given its 3-axis position explicitly: P + s + rope_delta on all
    three axes. step_logits[i] are the logits that chose ids[i] (step_logits[0] = last prompt position)."""
    ids_in = inp["input_ids"]
    P = ids_in.shape[1]
    attn = torch.ones_like(ids_in)
    out = model(input_ids=ids_in, attention_mask=attn, use_cache=True, **vision_kwargs(inp))
    _, delta = rope_index(model, inp)
    assert torch.equal(out.rope_deltas, delta)
    logits, past = out.logits[0, -1], out.past_key_values
    ids, step_logits = [], []
    for s in range(steps):
        step_logits.append(logits.clone())
        nxt = int(torch.argmax(logits))
        ids.append(nxt)
        if s == steps - 1:
            break
        attn = torch.cat([attn, torch.ones((1, 1), dtype=attn.dtype)], 1)
        pos = torch.full((3, 1, 1), P + s, dtype=torch.int64) + delta[0, 0]
        out = model(input_ids=torch.tensor([[nxt]]), attention_mask=attn, past_key_values=past, position_ids=pos,
                    cache_position=torch.tensor([P + s]), use_cache=True)
        logits, past = out.logits[0, -1], out.past_key_values
    return torch.tensor(ids, dtype=torch.int64), torch.stack(step_logits)


def top2_gap(step_logits):
    s = torch.sort(step_logits.double(), dim=-1, descending=True).values
    return s[:, 0] - s[:, 1]


@torch.no_grad()
def check_against_generate_and_full(model, inp, ids, step_logits):
    """(1) transformers' generate() (greedy, KV cache, positions from rope_deltas) gives the same ids and
    logits; (2) a single no-cache forward over prompt + generated tokens (positions from get_rope_index
    over the whole sequence) gives the same per-step logits."""
    ii = inp["input_ids"]
    g = model.generate(input_ids=ii, attention_mask=torch.ones_like(ii), max_new_tokens=len(ids),
                       min_new_tokens=len(ids), do_sample=False, num_beams=1, output_logits=True,
                       return_dict_in_generate=True, **vision_kwargs(inp))
    gen_ids = g.sequences[0, ii.shape[1]:]
    assert torch.equal(gen_ids, ids), (gen_ids, ids)
    d_gen = (torch.stack([x[0] for x in g.logits]) - step_logits).abs().max().item()
    full = torch.cat([ii, ids[None, :-1]], 1)
    out = model(input_ids=full, attention_mask=torch.ones_like(full), use_cache=False, **vision_kwargs(inp))
    d_full = (out.logits[0, ii.shape[1] - 1:] - step_logits).abs().max().item()
    return d_gen, d_full


@torch.no_grad()
def sensitivity(model, inp, pos, logits):
    """How far the last-position logits move under typical implementation mistakes (so that the
    goldens' tolerances can tell them apart): vision rows not written (pad-token embeddings stay),
    plain 1-D positions 0..L-1 instead of M-RoPE, and (video, Qwen2.5-VL) second_per_grid_ts 1 instead of 2."""
    ii = inp["input_ids"]
    attn = torch.ones_like(ii)
    res = {}
    emb = model.get_input_embeddings()(ii)
    o = model(inputs_embeds=emb, attention_mask=attn, position_ids=pos, use_cache=False)
    res["no_vision_rows"] = (o.logits[0, -1] - logits).abs().max().item()
    p1 = torch.arange(ii.shape[1]).view(1, 1, -1).expand(3, 1, -1)
    o = model(input_ids=ii, attention_mask=attn, position_ids=p1, use_cache=False, **vision_kwargs(inp))
    res["positions_1d"] = (o.logits[0, -1] - logits).abs().max().item()
    if "second_per_grid_ts" in inp:
        kw = dict(vision_kwargs(inp), second_per_grid_ts=torch.ones_like(inp["second_per_grid_ts"]))
        o = model(input_ids=ii, attention_mask=attn, use_cache=False, **kw)
        res["second_per_grid_ts_1"] = (o.logits[0, -1] - logits).abs().max().item()
    return res


@torch.no_grad()
def vision_run(model, pixel_values, grid_thw):
    """Vision tower with forward hooks: patch-embedding output (natural row order), first block output
    (Qwen2.5-VL: in window order, as computed) and the merger output (= model.visual(...))."""
    vis = model.model.visual
    cap = {}
    h1 = vis.patch_embed.register_forward_hook(lambda m, a, o: cap.__setitem__("patch_embed", o.detach().clone()))
    h2 = vis.blocks[0].register_forward_hook(lambda m, a, o: cap.__setitem__("block0", o.detach().clone()))
    try:
        out = vis(pixel_values.to(vis.dtype), grid_thw=grid_thw)
    finally:
        h1.remove()
        h2.remove()
    cap["vision_out"] = out.detach().clone()
    if hasattr(vis, "get_window_index"):
        wi, cu = vis.get_window_index(grid_thw)
        cap["window_index"] = wi.to(torch.int64)
        cap["cu_window_seqlens_raw"] = torch.tensor(cu, dtype=torch.int64)
        cap["cu_window_seqlens"] = torch.unique_consecutive(torch.tensor(cu, dtype=torch.int64))
    cu = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0]).cumsum(0)
    cap["cu_seqlens"] = F.pad(cu, (1, 0)).to(torch.int64)
    return cap


# ---------------------------------------------------------------------------------------------
# independent float64 re-implementation (from the saved hub-layout safetensors, no transformers modules)
# ---------------------------------------------------------------------------------------------
def ref_smart_resize(h, w, factor, min_pixels, max_pixels):
    hb, wb = round(h / factor) * factor, round(w / factor) * factor  # Python round: half to even
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return hb, wb


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def ref_pixel_rows(frames_u8, patch=14, tps=2, merge=2):
    """PIL bicubic resize of every frame to smart_resize's size, x/255 (float64 -> float32), (x - mean)/std
    in float32, frames padded to a multiple of tps by repeating the last one; rows ordered
    (t, h-block, w-block, h-in-block, w-in-block), columns (channel, frame-in-group, y, x)."""
    T, H, W, _ = frames_u8.shape
    rh, rw = ref_smart_resize(H, W, patch * merge, MIN_PIXELS, MAX_PIXELS)
    mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
    fr = []
    for f in frames_u8:
        a = np.asarray(Image.fromarray(f).resize((rw, rh), Image.BICUBIC))
        a = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
        fr.append(((a - mean) / std).transpose(2, 0, 1))  # (C, rh, rw)
    while len(fr) % tps:
        fr.append(fr[-1])
    fr = np.stack(fr)  # (T', C, rh, rw)
    gt, gh, gw = len(fr) // tps, rh // patch, rw // patch
    rows = []
    for t in range(gt):
        for bh in range(gh // merge):
            for bw in range(gw // merge):
                for mh in range(merge):
                    for mw in range(merge):
                        y, x = (bh * merge + mh) * patch, (bw * merge + mw) * patch
                        blk = fr[t * tps:(t + 1) * tps, :, y:y + patch, x:x + patch]  # (tps, C, p, p)
                        rows.append(blk.transpose(1, 0, 2, 3).reshape(-1))  # (C, tps, p, p)
    return np.stack(rows), (gt, gh, gw)


def ref_rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def ref_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def ref_rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def ref_vision_positions(grids, merge=2):
    """(h, w) patch coordinates of every row in processor order, for all items of `grids`."""
    hw = []
    for t, gh, gw in grids:
        for _ in range(t):
            for bh in range(gh // merge):
                for bw in range(gw // merge):
                    for mh in range(merge):
                        for mw in range(merge):
                            hw.append((bh * merge + mh, bw * merge + mw))
    return torch.tensor(hw, dtype=torch.float64)


def ref_window_order(grids, window_merged, merge=2):
    """Qwen2.5-VL: merged-unit order (per item, per frame: windows row-major, units row-major inside a
    window, clipped at the grid border) and the window lengths in patch rows."""
    order, lens, base = [], [], 0
    for t, gh, gw in grids:
        mh, mw = gh // merge, gw // merge
        for tt in range(t):
            for wy in range(0, mh, window_merged):
                for wx in range(0, mw, window_merged):
                    n = 0
                    for uy in range(wy, min(wy + window_merged, mh)):
                        for ux in range(wx, min(wx + window_merged, mw)):
                            order.append(base + tt * mh * mw + uy * mw + ux)
                            n += 1
                    lens.append(n * merge * merge)
        base += t * mh * mw
    return order, lens


def ref_attention_segments(q, k, v, lens):
    """Non-causal softmax attention inside each segment of consecutive rows; q,k,v (N, heads, hd)."""
    out, s = [], 0
    for n in lens:
        qs, ks, vs = q[s:s + n], k[s:s + n], v[s:s + n]
        a = torch.einsum("qhd,khd->hqk", qs, ks) / math.sqrt(q.shape[-1])
        out.append(torch.einsum("hqk,khd->qhd", a.softmax(-1), vs))
        s += n
    assert s == q.shape[0]
    return torch.cat(out, 0)


def ref_vision(sd, cfg, pixel_rows, grids, kind):
    """Vision tower of either model from hub-layout weights `visual.*`, float64. Returns dict of
    patch_embed, block0 (Qwen2.5-VL: window order) and vision_out."""
    vc = cfg["vision_config"]
    g = lambda n: sd["visual." + n].double()  # noqa: E731
    x = torch.as_tensor(pixel_rows, dtype=torch.float64)
    wpe = g("patch_embed.proj.weight")
    E = wpe.shape[0]
    x = x @ wpe.reshape(E, -1).T  # Conv3d with stride = kernel == one matmul, no bias
    res = {"patch_embed": x.clone()}
    heads = vc["num_heads"]
    hd = E // heads
    hw = ref_vision_positions(grids)
    inv = 1.0 / (10000.0 ** (torch.arange(0, hd // 2, 2, dtype=torch.float64) / (hd // 2)))  # hd/4 freqs
    ang = torch.cat([hw[:, :1] * inv, hw[:, 1:] * inv], 1)  # (N, hd/2): h freqs then w freqs
    full_lens = [gh * gw for t, gh, gw in grids for _ in range(t)]
    if kind == "qwen25vl":
        wm = vc["window_size"] // vc["spatial_merge_size"] // vc["patch_size"]
        order, win_lens = ref_window_order(grids, wm)
        idx = torch.tensor(order)
        x = x.reshape(-1, 4, E)[idx].reshape(-1, E)
        ang = ang.reshape(-1, 4, ang.shape[1])[idx].reshape(-1, ang.shape[1])
        res["window_index"] = idx
    emb = torch.cat([ang, ang], 1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    for i in range(vc["depth"]):
        p = f"blocks.{i}."
        if kind == "qwen2vl":
            h = ref_layer_norm(x, g(p + "norm1.weight"), g(p + "norm1.bias"), 1e-6)
        else:
            h = ref_rms_norm(x, g(p + "norm1.weight"), 1e-6)
        qkv = h @ g(p + "attn.qkv.weight").T + g(p + "attn.qkv.bias")
        q, k, v = (qkv[:, j * E:(j + 1) * E].reshape(-1, heads, hd) for j in range(3))
        q, k = q * cos + ref_rotate_half(q) * sin, k * cos + ref_rotate_half(k) * sin
        if kind == "qwen25vl" and i not in vc["fullatt_block_indexes"]:
            lens = win_lens
        else:
            lens = full_lens
        a = ref_attention_segments(q, k, v, [n for n in lens if n]).reshape(-1, E)
        x = x + a @ g(p + "attn.proj.weight").T + g(p + "attn.proj.bias")
        if kind == "qwen2vl":
            h = ref_layer_norm(x, g(p + "norm2.weight"), g(p + "norm2.bias"), 1e-6)
            h = h @ g(p + "mlp.fc1.weight").T + g(p + "mlp.fc1.bias")
            h = h * torch.sigmoid(1.702 * h)  # quick_gelu
            h = h @ g(p + "mlp.fc2.weight").T + g(p + "mlp.fc2.bias")
        else:
            h = ref_rms_norm(x, g(p + "norm2.weight"), 1e-6)
            gate = h @ g(p + "mlp.gate_proj.weight").T + g(p + "mlp.gate_proj.bias")
            up = h @ g(p + "mlp.up_proj.weight").T + g(p + "mlp.up_proj.bias")
            h = (F.silu(gate) * up) @ g(p + "mlp.down_proj.weight").T + g(p + "mlp.down_proj.bias")
        x = x + h
        if i == 0:
            res["block0"] = x.clone()
    if kind == "qwen2vl":
        h = ref_layer_norm(x, g("merger.ln_q.weight"), g("merger.ln_q.bias"), 1e-6)
    else:
        h = ref_rms_norm(x, g("merger.ln_q.weight"), 1e-6)
    h = h.reshape(-1, 4 * E)  # 4 consecutive rows = one 2x2 block
    h = h @ g("merger.mlp.0.weight").T + g("merger.mlp.0.bias")
    h = F.gelu(h)  # exact (erf) GELU
    h = h @ g("merger.mlp.2.weight").T + g("merger.mlp.2.bias")
    if kind == "qwen25vl":
        out = torch.empty_like(h)
        out[res["window_index"]] = h  # undo the window order
        h = out
    res["vision_out"] = h
    return res


def ref_rope_index(ids, image_grids, video_grids, second_per_grid=None, tokens_per_second=None, merge=2):
    """3-axis positions: text tokens get p on all axes (p = 1 + the largest position so far); the k-th
    run of <|image_pad|> / <|video_pad|> takes the next image / video grid (t, h/2, w/2) and gets
    (p + t*scale, p + row, p + col) in row-major order, scale = 1 (Qwen2-VL) or
    trunc(second_per_grid) * tokens_per_second (Qwen2.5-VL as transformers 4.57 computes it)."""
    pos = torch.zeros(3, len(ids), dtype=torch.int64)
    nxt, i, ni, nv = 0, 0, 0, 0
    while i < len(ids):
        if ids[i] in (IMAGE_PAD, VIDEO_PAD):
            if ids[i] == IMAGE_PAD:
                t, gh, gw = image_grids[ni]
                scale = 1 if second_per_grid is None else 0
                ni += 1
            else:
                t, gh, gw = video_grids[nv]
                scale = 1 if second_per_grid is None else int(second_per_grid[nv]) * tokens_per_second
                nv += 1
            mh, mw = gh // merge, gw // merge
            n = 0
            for tt in range(t):
                for y in range(mh):
                    for x in range(mw):
                        pos[:, i + n] = torch.tensor([nxt + tt * scale, nxt + y, nxt + x])
                        n += 1
            assert all(ids[i + j] == ids[i] for j in range(n))
            nxt = int(pos[:, i:i + n].max()) + 1
            i += n
        else:
            pos[:, i] = nxt
            nxt += 1
            i += 1
    return pos, nxt - len(ids)


def ref_lm(sd, cfg, ids, pos, image_feats, video_feats):
    """Qwen2 decoder over the whole sequence (causal, no cache), float64, M-RoPE. Returns logits (L, V)."""
    tc = cfg
    L = len(ids)
    x = sd["model.embed_tokens.weight"].double()[torch.tensor(ids)]
    ids_t = torch.tensor(ids)
    if image_feats is not None:
        x[ids_t == IMAGE_PAD] = image_feats
    if video_feats is not None:
        x[ids_t == VIDEO_PAD] = video_feats
    H, nh, nkv = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"]
    hd = H // nh
    inv = 1.0 / (tc["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))  # hd/2 freqs
    sec = tc["rope_scaling"]["mrope_section"]
    axis = torch.tensor(sum(([a] * n for a, n in enumerate(sec)), []))  # frequency j -> axis
    ang = pos.double().T[:, axis] * inv  # (L, hd/2)
    emb = torch.cat([ang, ang], 1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]
    mask = torch.full((L, L), float("-inf"), dtype=torch.float64).triu(1)
    g = lambda n: sd[n].double()  # noqa: E731
    for i in range(tc["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = ref_rms_norm(x, g(p + "input_layernorm.weight"), tc["rms_norm_eps"])
        q = (h @ g(p + "self_attn.q_proj.weight").T + g(p + "self_attn.q_proj.bias")).reshape(L, nh, hd)
        k = (h @ g(p + "self_attn.k_proj.weight").T + g(p + "self_attn.k_proj.bias")).reshape(L, nkv, hd)
        v = (h @ g(p + "self_attn.v_proj.weight").T + g(p + "self_attn.v_proj.bias")).reshape(L, nkv, hd)
        q, k = q * cos + ref_rotate_half(q) * sin, k * cos + ref_rotate_half(k) * sin
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)  # q head j -> kv j // g
        a = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        o = torch.einsum("hqk,khd->qhd", a.softmax(-1), v).reshape(L, H)
        x = x + o @ g(p + "self_attn.o_proj.weight").T
        h = ref_rms_norm(x, g(p + "post_attention_layernorm.weight"), tc["rms_norm_eps"])
        h = (F.silu(h @ g(p + "mlp.gate_proj.weight").T) * (h @ g(p + "mlp.up_proj.weight").T))
        x = x + h @ g(p + "mlp.down_proj.weight").T
    x = ref_rms_norm(x, g("model.norm.weight"), tc["rms_norm_eps"])
    return x @ g("lm_head.weight").T


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def save_file_deterministic(tensors, path, metadata):
    """safetensors.torch.save_file, but with the JSON header's keys in a fixed order (safetensors
    serialises __metadata__ from a Rust HashMap, whose order changes from run to run)."""
    raw = save(tensors, metadata=metadata)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    ordered = {"__metadata__": dict(sorted(meta.items()))}
    ordered.update(sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]))
    h = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n:])
    back = load_file(str(path))
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)


# ---------------------------------------------------------------------------------------------
# one model
# ---------------------------------------------------------------------------------------------
def prepare_cases(proc, kind, image, image2, frames):
    """Processor inputs of the three cases (chat template text + processor call). The video's frames go
    in as given (no sampling); Qwen2.5-VL also gets fps (-> second_per_grid_ts)."""
    cases = {}
    vkw = dict(fps=VIDEO_FPS_25) if kind == "qwen25vl" else {}
    msgs = {
        "image": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": IMAGE_QUESTION}]}],
        "video": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": VIDEO_QUESTION}]}],
        "multi": [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "image"},
                                               {"type": "text", "text": MULTI_QUESTION}]}],
    }
    for case, m in msgs.items():
        extra = {"add_vision_id": True} if case == "multi" else {}
        chat = proc.apply_chat_template(m, add_generation_prompt=True, tokenize=False, **extra)
        kw = {}
        if case in ("image", "multi"):
            kw["images"] = [Image.fromarray(image)] + ([Image.fromarray(image2)] if case == "multi" else [])
        if case in ("video", "multi"):
            kw["videos"] = [frames]
            kw.update(vkw)
        inp = proc(text=[chat], return_tensors="pt", **kw)
        cases[case] = (chat, inp)
    return cases


def run_model(kind, seed, out, frames, image, image2, G, META, stats, scan=False):
    gen = torch.Generator().manual_seed(seed)
    tok = build_tokenizer(kind == "qwen25vl")
    proc = build_processor(tok, kind == "qwen25vl")
    model0 = build_model(kind, gen)
    cls = type(model0)
    if scan:
        model = model0
    else:
        out.mkdir(parents=True, exist_ok=True)
        model0.save_pretrained(str(out), safe_serialization=True)
        proc.save_pretrained(str(out))
        model = cls.from_pretrained(str(out), attn_implementation="eager", dtype=torch.float32).eval()
        for k, v in model0.state_dict().items():
            assert torch.equal(v, model.state_dict()[k]), k
        assert model.config.vision_config._attn_implementation == "eager"
        assert model.config.text_config._attn_implementation == "eager"
        # what a user of the directory gets; AutoProcessor would pick Qwen2VLImageProcessorFast by
        # default in 4.57 even though the slow one was saved, hence use_fast=False
        proc = AutoProcessor.from_pretrained(str(out), use_fast=False)
        assert type(proc).__name__ == ("Qwen2_5_VLProcessor" if kind == "qwen25vl" else "Qwen2VLProcessor")
        assert type(proc.image_processor).__name__ == "Qwen2VLImageProcessor", type(proc.image_processor)
        assert type(proc.video_processor).__name__ == "Qwen2VLVideoProcessor", type(proc.video_processor)
    del model0

    cases = prepare_cases(proc, kind, image, image2, frames)
    gaps = {}
    results = {}
    for case, (chat, inp) in cases.items():
        ids, sl = greedy(model, inp)
        gaps[case] = top2_gap(sl).min().item()
        results[case] = (ids, sl)
        assert int(ids.max()) < FIRST_SPECIAL_ID, (case, ids)
    if scan:
        return gaps

    # ---------------------------------------------------------------- goldens
    sd_file = load_file(str(out / "model.safetensors"))  # hub layout: visual.*, model.*, lm_head.weight
    cfg_json = json.loads((out / "config.json").read_text())
    ref_cfg = {**cfg_json["text_config"], "rope_theta": cfg_json["text_config"]["rope_theta"]}
    m64 = copy.deepcopy(model).to(torch.float64)
    G.update({"image.u8": torch.from_numpy(image), "image2.u8": torch.from_numpy(image2),
              "video.frames_u8": torch.from_numpy(np.ascontiguousarray(frames))})
    for case, (chat, inp) in cases.items():
        ids, sl = results[case]
        ii = inp["input_ids"]
        pos, delta = rope_index(model, inp)
        prompt = tok.decode(ii[0], skip_special_tokens=False)
        META[f"prompt.{case}"] = prompt
        META[f"prompt.{case}_chat_template_output"] = chat
        stats[f"gap.{case}"] = gaps[case]
        stats[f"{case}.check_generate_and_full"] = check_against_generate_and_full(model, inp, ids, sl)
        stats[f"{case}.prompt_len"] = ii.shape[1]
        stats[f"ids.{case}"] = ids.tolist()
        G[f"{case}.input_ids"] = ii[0].to(torch.int64)
        G[f"{case}.position_ids"] = pos[:, 0].to(torch.int64)
        G[f"{case}.rope_deltas"] = delta[0].to(torch.int64)
        G[f"{case}.logits"] = sl[0].contiguous()
        G[f"{case}.step_logits"] = sl.contiguous()
        G[f"{case}.greedy_ids"] = ids
        stats[f"{case}.sensitivity"] = sensitivity(model, inp, pos, sl[0])
        # float64 run of the same weights
        ids64, sl64 = greedy(m64, {k: (v.double() if v.is_floating_point() and k.startswith("pixel") else v)
                                   for k, v in inp.items()})
        assert torch.equal(ids64, ids), case
        stats[f"f64.{case}.step_logits_maxabs"] = (sl64 - sl.double()).abs().max().item()
        stats[f"{case}.max_abs_logit"] = sl.abs().max().item()
        # vision tower(s)
        vis = {}
        if "pixel_values" in inp:
            vis["image"] = (inp["pixel_values"], inp["image_grid_thw"])
        if "pixel_values_videos" in inp:
            vis["video"] = (inp["pixel_values_videos"], inp["video_grid_thw"])
        feats = {}
        for which, (pv, grid) in vis.items():
            cap = vision_run(model, pv, grid)
            cap64 = vision_run(m64, pv.double(), grid)
            feats[which] = cap["vision_out"]
            stats[f"f64.{case}.{which}.vision_out_maxabs"] = (cap64["vision_out"] - cap["vision_out"].double()).abs().max().item()
            ref = ref_vision(sd_file, cfg_json, pv.numpy().astype(np.float64), grid.tolist(), kind)
            for key in ("patch_embed", "block0", "vision_out"):
                stats[f"ref.{case}.{which}.{key}_maxabs"] = (ref[key] - cap[key].double()).abs().max().item()
            if kind == "qwen25vl":
                assert torch.equal(ref["window_index"], cap["window_index"]), (case, which)
            prefix = f"multi.{which}_" if case == "multi" else f"{case}."
            G[f"{prefix}patch_embed"] = cap["patch_embed"].contiguous()
            G[f"{prefix}block0"] = cap["block0"].contiguous()
            G[f"{prefix}vision_out"] = cap["vision_out"].contiguous()
            G[f"{prefix}cu_seqlens"] = cap["cu_seqlens"]
            if kind == "qwen25vl":
                G[f"{prefix}window_index"] = cap["window_index"]
                G[f"{prefix}cu_window_seqlens"] = cap["cu_window_seqlens"]
                stats[f"{case}.{which}.cu_window_seqlens_raw"] = cap["cu_window_seqlens_raw"].tolist()
            # the processor's rows == the reference preprocessing (PIL, float32 normalisation)
            if which == "image":
                imgs = [image] + ([image2] if case == "multi" else [])
                rows = np.concatenate([ref_pixel_rows(im[None])[0] for im in imgs])
                grids = [list(ref_pixel_rows(im[None])[1]) for im in imgs]
                stats[f"ref.{case}.pixel_values_maxabs"] = float(np.abs(rows - pv.numpy()).max())
                assert grids == grid.tolist(), (grids, grid)
        # the image / video inputs
        if case == "image":
            G["image.pixel_values"] = inp["pixel_values"].contiguous()
            G["image.image_grid_thw"] = inp["image_grid_thw"].to(torch.int64)
        if case == "video":
            G["video.pixel_values_videos"] = inp["pixel_values_videos"].contiguous()
            G["video.video_grid_thw"] = inp["video_grid_thw"].to(torch.int64)
            if kind == "qwen25vl":
                G["video.second_per_grid_ts"] = torch.as_tensor(inp["second_per_grid_ts"], dtype=torch.float32)
            # the deprecated video path of the slow image processor = PIL resize of the same frames
            pil = proc.image_processor(images=None, videos=[frames], return_tensors="pt")
            rows, grid = ref_pixel_rows(frames)
            assert list(grid) == inp["video_grid_thw"][0].tolist()
            assert grid[0] == (len(frames) + 1) // 2  # the odd frame count is padded by repeating the last frame
            # the repeated frame: the last temporal group's two frame columns are equal
            pv = inp["pixel_values_videos"].reshape(grid[0], -1, 3, 2, 14 * 14)
            assert torch.equal(pv[-1, :, :, 0], pv[-1, :, :, 1]) and not torch.equal(pv[0, :, :, 0], pv[0, :, :, 1])
            stats["video.pixel_values_videos_pil_vs_ref_maxabs"] = float(np.abs(rows - pil["pixel_values_videos"].numpy()).max())
            stats["video.pixel_values_videos_torchvision_vs_pil_maxabs"] = (
                pil["pixel_values_videos"] - inp["pixel_values_videos"]).abs().max().item()
            if kind == "qwen2vl":
                G["video.pixel_values_videos_pil"] = pil["pixel_values_videos"].contiguous()
        if case == "multi":
            G["image2.pixel_values"] = inp["pixel_values"][G["image.pixel_values"].shape[0]:].contiguous()
            assert torch.equal(inp["pixel_values"][:G["image.pixel_values"].shape[0]], G["image.pixel_values"])
            assert torch.equal(inp["pixel_values_videos"], G["video.pixel_values_videos"])
            G["image2.image_grid_thw"] = inp["image_grid_thw"][1:].to(torch.int64)
            G["multi.image_grid_thw"] = inp["image_grid_thw"].to(torch.int64)
            G["multi.video_grid_thw"] = inp["video_grid_thw"].to(torch.int64)
            n_a = G["image.vision_out"].shape[0]
            # block-diagonal attention: image A's rows are the same whether or not image B is in the batch
            stats["multi.image_a_rows_vs_image_alone_maxabs"] = (feats["image"][:n_a] - G["image.vision_out"]).abs().max().item()
            stats["multi.video_vs_video_alone_maxabs"] = (feats["video"] - G["video.vision_out"]).abs().max().item()
        # independent re-implementation: positions and the whole LM over prompt + generated tokens
        sec = None
        if kind == "qwen25vl" and "second_per_grid_ts" in inp:
            sec = [float(s) for s in inp["second_per_grid_ts"]]
        rpos, rdelta = ref_rope_index(ii[0].tolist(), inp.get("image_grid_thw", torch.zeros(0, 3)).tolist(),
                                      inp.get("video_grid_thw", torch.zeros(0, 3)).tolist(),
                                      sec if kind == "qwen25vl" else None, TOKENS_PER_SECOND)
        assert torch.equal(rpos, pos[:, 0]) and rdelta == int(delta), (case, rpos, pos)
        full = ii[0].tolist() + ids[:-1].tolist()
        P = ii.shape[1]
        fpos = torch.cat([rpos, (torch.arange(P, len(full)) + rdelta).expand(3, -1)], 1)
        rl = ref_lm(sd_file, ref_cfg, full, fpos,
                    ref_vision(sd_file, cfg_json, inp["pixel_values"].numpy(), inp["image_grid_thw"].tolist(), kind)["vision_out"]
                    if "pixel_values" in inp else None,
                    ref_vision(sd_file, cfg_json, inp["pixel_values_videos"].numpy(), inp["video_grid_thw"].tolist(), kind)["vision_out"]
                    if "pixel_values_videos" in inp else None)
        stats[f"ref.{case}.step_logits_maxabs"] = (rl[P - 1:] - sl.double()).abs().max().item()

    # ---------------------------------------------------------------- a few extra facts for the README
    inp = cases["image"][1]
    pe = model.model.visual.patch_embed.proj.weight
    conv = model.model.visual.patch_embed(inp["pixel_values"])
    stats["patch_embed_conv3d_vs_matmul_maxabs"] = (conv - inp["pixel_values"] @ pe.reshape(pe.shape[0], -1).T).abs().max().item()
    if kind == "qwen25vl":
        # get_rope_index casts second_per_grid_t to the int64 dtype of arange before multiplying:
        # a non-integer second_per_grid_ts is truncated (0.5 -> 0, 1.5 -> 1).
        vin = cases["video"][1]
        for spg in (0.5, 1.0, 1.5, 2.0):
            p, _ = model.model.get_rope_index(vin["input_ids"], None, vin["video_grid_thw"],
                                              second_per_grid_ts=torch.tensor([spg]),
                                              attention_mask=vin["attention_mask"])
            vid = vin["input_ids"][0] == VIDEO_PAD
            t = p[0, 0][vid]
            stats[f"rope_index_second_per_grid_{spg}_temporal_positions"] = sorted(set((t - t.min()).tolist()))
    return gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/qwen2vl-tiny"))
    ap.add_argument("--seed-qwen2vl", type=int, default=SEEDS["qwen2vl"])
    ap.add_argument("--seed-qwen25vl", type=int, default=SEEDS["qwen25vl"])
    ap.add_argument("--scan", type=int, default=0,
                    help="scan seeds base+1..base+N per model, print the min greedy gaps, write nothing")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    frames = make_frames(*FRAMES_THW)
    assert len(frames) % 2 == 1 and FRAMES_THW[1] != FRAMES_THW[2]  # odd count, non-square frames
    image = make_image(*IMAGE_HW)
    image2 = make_image2(*IMAGE2_HW)
    assert smart_resize(*IMAGE_HW, 28, MIN_PIXELS, MAX_PIXELS) == (84, 112)
    assert smart_resize(*IMAGE2_HW, 28, MIN_PIXELS, MAX_PIXELS) == (56, 84)
    assert smart_resize(*FRAMES_THW[1:], 28, MIN_PIXELS, MAX_PIXELS) == (56, 112)

    if args.scan:
        for kind, base in SCAN_BASE.items():
            for s in range(base + 1, base + args.scan + 1):
                torch.manual_seed(s)
                gaps = run_model(kind, s, None, frames, image, image2, None, None, None, scan=True)
                print(kind, s, f"{min(gaps.values()):.4f}", {k: round(v, 4) for k, v in gaps.items()}, flush=True)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():  # start clean, but keep the hand-written README.md
        if entry.name == "README.md":
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    all_stats = {}
    seeds = {"qwen2vl": args.seed_qwen2vl, "qwen25vl": args.seed_qwen25vl}
    for kind, seed in seeds.items():
        torch.manual_seed(seed)
        G, META, stats = {}, {}, {}
        run_model(kind, seed, out / kind, frames, image, image2, G, META, stats)
        desc = describe(kind)
        assert set(desc) == set(G), sorted(set(desc) ^ set(G))
        META.update({f"desc.{k}": v for k, v in desc.items()})
        META.update({
            "versions": json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                    "safetensors": safetensors.__version__, "numpy": np.__version__,
                                    "pillow": PIL.__version__, "python": sys.version.split()[0]}),
            "seed": str(seed),
            "question.image": IMAGE_QUESTION, "question.video": VIDEO_QUESTION, "question.multi": MULTI_QUESTION,
            "stats": json.dumps(stats),
            "generator": "scripts/goldens/qwen2vl_hf.py",
            "special_ids": json.dumps({t: FIRST_SPECIAL_ID + k for k, t in enumerate(
                QWEN2VL_SPECIAL + (QWEN25VL_EXTRA if kind == "qwen25vl" else []))}),
            "init": "seeded normal init (init_weights): fan-in scaled, q/k (and vision qkv q/k rows) gain 2, "
                    "lm_head gain 4 with rows >= 988 x0.05, norm gains 1 +- 0.2, biases +- 0.1, embeddings N(0, 1)",
        })
        G = {k: v.detach().clone().contiguous() for k, v in sorted(G.items())}
        save_file_deterministic(G, out / kind / "golden.safetensors", META)
        all_stats[kind] = stats
        print(f"===== {kind}")
        print(json.dumps(stats, indent=1))
        for k in sorted(META):
            if k.startswith("prompt."):
                print(f"--- {k}\n{META[k]!r}")
        print("--- golden tensors")
        for k, v in G.items():
            print(f"{k:34s} {str(v.dtype):14s} {tuple(v.shape)}")
        print("--- model.safetensors keys")
        for k, v in load_file(str(out / kind / "model.safetensors")).items():
            print(f"  {k} {tuple(v.shape)}")
    worst = min(v for s in all_stats.values() for k, v in s.items() if k.startswith("gap."))
    print("smallest greedy top1-top2 gap over all cases:", worst)


def describe(kind):
    q25 = kind == "qwen25vl"
    # E = vision width (40), H = LLM hidden (48)
    d = {
        "image.u8": "(90, 130, 3) uint8 RGB input image",
        "image.pixel_values": "(48, 1176) f32: Qwen2VLImageProcessor (slow, PIL bicubic to 84x112, CLIP mean/std); "
                              "rows (t, h/2, w/2, 2, 2), columns (C=3, T=2, 14, 14), the frame repeated to T=2",
        "image.image_grid_thw": "(1, 3) [[1, 6, 8]]",
        "image.input_ids": "chat template + processor (<|image_pad|> x 12)",
        "image.position_ids": "(3, L) get_rope_index (t, h, w rows)",
        "image.rope_deltas": "(1,) max position + 1 - L; decode step s uses position L + s + delta on all axes",
        "image.patch_embed": "(48, E) patch embedding output, processor row order",
        "image.block0": "(48, E) first vision block output" + (" in window order (see window_index)" if q25 else ""),
        "image.vision_out": "(12, H) merger output = the rows written at <|image_pad|>",
        "image.cu_seqlens": "full-attention segment bounds (rows), per image and frame group",
        "image.logits": "(V,) last prompt position", "image.step_logits": "(8, V) logits that chose each greedy id",
        "image.greedy_ids": "(8,) greedy ids, KV cache",
        "image2.u8": "(40, 50, 3) uint8 RGB second image (multi case)",
        "image2.pixel_values": "(24, 1176) f32, 56x84 (smart_resize min_pixels branch)",
        "image2.image_grid_thw": "(1, 3) [[1, 4, 6]]",
        "video.frames_u8": "(5, 70, 98, 3) uint8: the frames given to the processor (an odd count: the last one "
                           "is repeated to 6 = 3 temporal groups)" + (", with fps 1.0" if q25 else ""),
        "video.pixel_values_videos": "(96, 1176) f32: Qwen2VLVideoProcessor (torchvision bicubic+antialias on uint8, "
                                     "56x112), 5 frames + the last repeated -> grid_t 3",
        "video.video_grid_thw": "(1, 3) [[3, 4, 8]]",
        "video.input_ids": "chat template + processor (<|video_pad|> x 24)",
        "video.position_ids": "(3, L)", "video.rope_deltas": "(1,)",
        "video.patch_embed": "(96, E)", "video.block0": "(96, E)" + (" window order" if q25 else ""),
        "video.vision_out": "(24, H)", "video.cu_seqlens": "per temporal group: [0, 32, 64, 96]",
        "video.logits": "(V,)", "video.step_logits": "(8, V)", "video.greedy_ids": "(8,)",
        "multi.input_ids": "image, video, second image, question; add_vision_id (Picture 1: / Video 1: / Picture 2:)",
        "multi.image_grid_thw": "(2, 3)", "multi.video_grid_thw": "(1, 3)",
        "multi.position_ids": "(3, L)", "multi.rope_deltas": "(1,)",
        "multi.image_patch_embed": "(72, E) both images", "multi.image_block0": "(72, E)",
        "multi.image_vision_out": "(18, H) image rows (12 + 6)", "multi.image_cu_seqlens": "[0, 48, 72]",
        "multi.video_patch_embed": "(96, E)", "multi.video_block0": "(96, E)", "multi.video_vision_out": "(24, H)",
        "multi.video_cu_seqlens": "[0, 32, 64, 96]",
        "multi.logits": "(V,)", "multi.step_logits": "(8, V)", "multi.greedy_ids": "(8,)",
    }
    if q25:
        d["video.second_per_grid_ts"] = "(1,) f32 [2.0] = temporal_patch_size / fps"
        for p in ("image.", "video.", "multi.image_", "multi.video_"):
            d[p + "window_index"] = "merged-unit order used inside the tower (get_window_index)"
            d[p + "cu_window_seqlens"] = "window segment bounds in rows (after unique_consecutive)"
    else:
        d["video.pixel_values_videos_pil"] = ("(96, 1176) f32: the same 5 frames through the slow image processor's "
                                              "deprecated video path (PIL bicubic, last frame repeated), comparison only")
    return d


if __name__ == "__main__":
    main()
