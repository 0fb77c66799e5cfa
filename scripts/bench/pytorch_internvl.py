#!/usr/bin/env python3
"""PyTorch-CPU peer of `linvt bench` / `linvt ask` for InternVL models (remote-code layout).

Loads an `InternVLChatModel` directory (config.json with `vision_config` + `llm_config`,
model.safetensors in bf16 or f32, tokenizer.json) into Hugging Face transformers'
`InternVLForConditionalGeneration` (weights renamed in memory with transformers' own
remote -> -hf mapping), builds the prompt InternVL's `chat()` builds for a video
(`Frame1: <image>\\n...FrameN: <image>\\n{question}` in the config's conversation template,
each `<image>` -> `<img>` + `<IMG_CONTEXT>` x tokens-per-frame + `</img>`), and times, on the CPU:

  preprocess   PIL: RGB -> resize (S, S) bicubic -> /255 -> ImageNet mean/std, every frame
               (the image files are decoded once, before timing)
  vision       model.get_image_features: InternViT + pixel shuffle + mlp1, all frames at once
  prefill      the language model on the prompt embeddings (visual tokens written at the
               `<IMG_CONTEXT>` positions, not timed), KV cache on -> first token by argmax
  decode_step  one greedy step with the KV cache (the mean over max_new_tokens - 1 steps)

One untimed warm-up of the whole sequence (unless --no-warmup), then --reps timed repetitions;
every figure is the median over the repetitions, reported like `linvt bench --json`:
vision frames/s, prefill tokens/s, decode tokens/s (1 / decode_step), time to first token
(preprocess + vision + prefill), stage ms, prompt tokens and ids, greedy ids, peak RSS
(ru_maxrss, includes loading). Decoding never stops early at an end-of-turn token.

Run with the goldens venv (scripts/goldens/setup-venv.sh); nothing is downloaded:

    .venv-goldens/bin/python scripts/bench/pytorch_internvl.py --model DIR --frames FRAMES_DIR \\
        [--question Q] [--max-new-tokens 16] [--reps 5] [--threads 2] [--dtype float32|bfloat16] \\
        [--attn sdpa|eager] [--no-warmup] [--json]

--frames DIR: every .png/.jpg/.jpeg file in DIR, in file-name order, is one frame.
--image FILE: one image, one tile (resized to S x S; no dynamic tiling), prompt `<image>\\n{question}`.
Supported: Qwen2 language models, templates `Hermes-2` and `internvl2_5`, `select_layer` -1,
`ps_version` v2. LinVT tensors of a LinVT checkpoint (`linVT.*`, `query_tokens`) are ignored:
this measures the plain InternVL frames path.
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import InternVLConfig, InternVLForConditionalGeneration  # noqa: E402
from transformers.modeling_utils import no_init_weights  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_QUESTION = "Describe what happens in this video."  # `linvt bench`'s question

# InternVL's conversation templates (internvl_chat/internvl/conversation.py, SeparatorStyle.MPT),
# as in docs/internvl-reference.md §3.
INTERNVL2_SYSTEM = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
INTERNVL25_SYSTEM = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
TEMPLATES = {
    "Hermes-2": dict(system_template="<|im_start|>system\n{system_message}", system_message=INTERNVL2_SYSTEM,
                     roles=("<|im_start|>user\n", "<|im_start|>assistant\n"), sep="<|im_end|>"),
    "internvl2_5": dict(system_template="<|im_start|>system\n{system_message}", system_message=INTERNVL25_SYSTEM,
                        roles=("<|im_start|>user\n", "<|im_start|>assistant\n"), sep="<|im_end|>\n"),
}

# transformers' convert_internvl_weights_to_hf.py mapping (docs/internvl-reference.md §5.2), written
# per key for the in-memory module names of InternVLForConditionalGeneration. Vision rules apply
# to the part after `vision_model.`; the fused attn.qkv is split separately.
VISION_RULES = (
    (r"^embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"^embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"^embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"^encoder\.layers\.(\d+)\.ls(\d)$", r"encoder.layer.\1.lambda_\2"),
    (r"^encoder\.layers\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.projection_layer."),
    (r"^encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.", r"encoder.layer.\1.attention.\2."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"encoder.layer.\1.mlp."),
)
VISION_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")
PROJECTOR = {"0": "layer_norm", "1": "linear_1", "3": "linear_2"}
# InternViT's config-class defaults (configuration_intern_vit.py), for keys a config.json omits.
VIT_DEFAULTS = dict(qkv_bias=False, qk_normalization=True, norm_type="rms_norm", layer_norm_eps=1e-6,
                    hidden_act="gelu", patch_size=14)
LLM_CONFIG_DROP = ("_attn_implementation", "attn_implementation", "torch_dtype", "dtype", "transformers_version",
                   "_name_or_path", "auto_map")


def fail(msg):
    sys.exit(f"pytorch_internvl: {msg}")


def read_remote_config(model_dir):
    path = model_dir / "config.json"
    if not path.is_file():
        fail(f"{model_dir} is not a model directory (no config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if "vision_config" not in cfg or "llm_config" not in cfg:
        fail(f"{path} is not InternVLChatModel's remote-code layout (needs vision_config and llm_config)")
    arch = (cfg["llm_config"].get("architectures") or ["?"])[0]
    if arch == "InternLM2ForCausalLM":
        fail("InternLM2 language models are not supported: transformers has no InternLM2 class (the -hf "
             "conversion to Llama, wqkv split included, is not implemented here); use a Qwen2-based model")
    if arch != "Qwen2ForCausalLM":
        fail(f"language model {arch} is not supported (Qwen2ForCausalLM only)")
    if cfg.get("template") not in TEMPLATES:
        fail(f"template {cfg.get('template')!r} is not supported (one of {', '.join(TEMPLATES)})")
    if cfg.get("select_layer", -1) != -1:
        fail(f"select_layer {cfg['select_layer']} is not supported: transformers 4.57's "
             "get_image_features only handles the last layer (-1)")
    if cfg.get("ps_version", "v1") != "v2":
        fail(f"ps_version {cfg.get('ps_version', 'v1')!r} is not supported: transformers' pixel shuffle is v2")
    return cfg


def image_size(cfg):
    return cfg.get("force_image_size") or cfg["vision_config"]["image_size"]


def tokens_per_frame(cfg):
    vc = cfg["vision_config"]
    patch = vc.get("patch_size", VIT_DEFAULTS["patch_size"])
    return int((image_size(cfg) // patch) ** 2 * cfg["downsample_ratio"] ** 2)


def hf_config(cfg, image_token_id):
    vc = {**VIT_DEFAULTS, **cfg["vision_config"]}
    vision = dict(
        hidden_size=vc["hidden_size"], num_hidden_layers=vc["num_hidden_layers"],
        num_attention_heads=vc["num_attention_heads"], intermediate_size=vc["intermediate_size"],
        image_size=[vc["image_size"]] * 2, patch_size=[vc["patch_size"]] * 2, norm_type=vc["norm_type"],
        layer_norm_eps=vc["layer_norm_eps"], hidden_act=vc["hidden_act"], attention_bias=vc["qkv_bias"],
        use_qk_norm=vc["qk_normalization"], use_mean_pooling=True, use_absolute_position_embeddings=True,
        use_mask_token=False, layer_scale_init_value=0.1,  # LayerScale values come from the checkpoint
        attention_dropout=0.0, projection_dropout=0.0, hidden_dropout_prob=0.0,
    )
    text = {k: v for k, v in cfg["llm_config"].items() if k not in LLM_CONFIG_DROP}
    text["model_type"] = "qwen2"
    text["tie_word_embeddings"] = False  # InternVLChatConfig forces it off; checkpoints carry lm_head
    return InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id,
        image_seq_length=tokens_per_frame(cfg), downsample_ratio=cfg["downsample_ratio"],
        projector_hidden_act="gelu", vision_feature_layer=cfg.get("select_layer", -1),
        vision_feature_select_strategy="default", tie_word_embeddings=False,
    )


def weight_files(model_dir):
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted({model_dir / f for f in json.loads(index.read_text())["weight_map"].values()})
    single = model_dir / "model.safetensors"
    if not single.is_file():
        fail(f"{model_dir} has no model.safetensors (nor model.safetensors.index.json)")
    return [single]


def renamed(key, t, vision_dim):
    """(name, tensor) pairs of one checkpoint tensor under InternVLForConditionalGeneration's
    names. A key no rule matches keeps its name, so the strict load reports it."""
    if key.startswith("vision_model."):
        rest = key[len("vision_model."):]
        m = VISION_QKV.match(rest)
        if m:
            base = f"model.vision_tower.encoder.layer.{m.group(1)}.attention"
            return [(f"{base}.{name}_proj.{m.group(2)}", t[i * vision_dim:(i + 1) * vision_dim])
                    for i, name in enumerate("qkv")]
        for pat, rep in VISION_RULES:
            if re.match(pat, rest):
                return [("model.vision_tower." + re.sub(pat, rep, rest), t)]
    elif (m := re.match(r"^mlp1\.(\d)\.(weight|bias)$", key)) and m.group(1) in PROJECTOR:
        return [(f"model.multi_modal_projector.{PROJECTOR[m.group(1)]}.{m.group(2)}", t)]
    elif key.startswith("language_model.model."):
        return [("model.language_model." + key[len("language_model.model."):], t)]
    elif key.startswith("language_model.lm_head."):
        return [("lm_head." + key[len("language_model.lm_head."):], t)]
    return [(key, t)]


def converted_weights(model_dir, vision_dim, dtype, skip_linvt):
    """The checkpoint's tensors, renamed, cast to dtype (LinVT's skipped when skip_linvt)."""
    out = {}
    for path in weight_files(model_dir):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if not (skip_linvt and (key.startswith("linVT.") or key == "query_tokens")):
                    out.update(renamed(key, f.get_tensor(key).to(dtype), vision_dim))
    return out


def load_model(model_dir, cfg, image_token_id, dtype, attn):
    config = hf_config(cfg, image_token_id)
    with no_init_weights():  # every parameter is overwritten by the checkpoint
        model = InternVLForConditionalGeneration._from_config(config, attn_implementation=attn, dtype=dtype)
    sd = converted_weights(model_dir, config.vision_config.hidden_size, dtype, "linvt_config" in cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        fail(f"weights do not match InternVLForConditionalGeneration: missing {sorted(missing)}, "
             f"unexpected {sorted(unexpected)}")
    return model.eval()


def chat_prompt(cfg, question, n_images, n_tokens):
    """InternVLChatModel.chat()'s prompt (history None), `<image>` placeholders expanded."""
    t = TEMPLATES[cfg["template"]]
    system = cfg.get("system_message") or t["system_message"]
    query = t["system_template"].format(system_message=system) + t["sep"]
    query += t["roles"][0] + question + t["sep"] + t["roles"][1]
    for _ in range(n_images):
        query = query.replace("<image>", "<img>" + "<IMG_CONTEXT>" * n_tokens + "</img>", 1)
    return query


def load_images(args):
    if args.image:
        paths = [Path(args.image)]
    else:
        paths = sorted(p for p in Path(args.frames).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not paths:
            fail(f"no .png/.jpg frames in {args.frames}")
    images = []
    for p in paths:
        im = Image.open(p)
        im.load()
        images.append(im)
    return images


def preprocess(images, size):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    tiles = []
    for im in images:
        a = np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))
        tiles.append((torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255.0 - mean) / std)
    return torch.stack(tiles)


@torch.inference_mode()
def run_once(model, images, size, input_ids, context_mask, max_new_tokens):
    """One pass of every stage; returns ({stage: ms}, greedy ids)."""
    t0 = time.perf_counter()
    pixel_values = preprocess(images, size)
    t1 = time.perf_counter()
    features = model.get_image_features(pixel_values=pixel_values)
    t2 = time.perf_counter()
    embeds = model.get_input_embeddings()(input_ids)
    embeds[context_mask] = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
    t3 = time.perf_counter()
    out = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
    ids = [int(out.logits[0, -1].argmax())]
    t4 = time.perf_counter()
    for _ in range(max_new_tokens - 1):
        out = model(input_ids=torch.tensor([ids[-1:]]), past_key_values=out.past_key_values, use_cache=True,
                    logits_to_keep=1)
        ids.append(int(out.logits[0, -1].argmax()))
    t5 = time.perf_counter()
    ms = {"preprocess": (t1 - t0) * 1e3, "vision": (t2 - t1) * 1e3, "prefill": (t4 - t3) * 1e3,
          "decode_step": (t5 - t4) * 1e3 / (max_new_tokens - 1)}
    return ms, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="InternVLChatModel directory (remote-code layout)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames", help="directory of frames (.png/.jpg, file-name order)")
    src.add_argument("--image", help="one image file (one tile)")
    ap.add_argument("--question", default=DEFAULT_QUESTION)
    ap.add_argument("--max-new-tokens", type=int, default=16,
                    help="greedy tokens: the first from prefill, then max_new_tokens - 1 timed decode steps")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if args.max_new_tokens < 2 or args.reps < 1 or args.threads < 1:
        fail("--max-new-tokens must be >= 2, --reps and --threads >= 1")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    cfg = read_remote_config(args.model)
    tok_path = args.model / "tokenizer.json"
    if not tok_path.is_file():
        fail(f"{args.model} has no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tok_path))
    image_token_id = tokenizer.token_to_id("<IMG_CONTEXT>")
    if image_token_id is None:
        fail("the tokenizer has no <IMG_CONTEXT> token")
    size, n_tokens = image_size(cfg), tokens_per_frame(cfg)

    images = load_images(args)
    if args.image:
        question = args.question if "<image>" in args.question else "<image>\n" + args.question
    else:
        question = "".join(f"Frame{i + 1}: <image>\n" for i in range(len(images))) + args.question
    prompt_ids = tokenizer.encode(chat_prompt(cfg, question, len(images), n_tokens), add_special_tokens=False).ids
    input_ids = torch.tensor([prompt_ids])
    context_mask = input_ids == image_token_id
    if int(context_mask.sum()) != len(images) * n_tokens:
        fail(f"the prompt has {int(context_mask.sum())} <IMG_CONTEXT> tokens, expected {len(images) * n_tokens} "
             "(does the question contain <image>?)")
    max_pos = cfg["llm_config"].get("max_position_embeddings")
    if max_pos and len(prompt_ids) + args.max_new_tokens > max_pos:
        fail(f"prompt ({len(prompt_ids)} tokens) + {args.max_new_tokens} new tokens exceeds the context of {max_pos}")

    t = time.perf_counter()
    model = load_model(args.model, cfg, image_token_id, dtype, args.attn)
    load_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.model} in {load_s:.2f} s ({n_params / 1e6:.1f} M parameters, {args.dtype}, "
          f"attn {args.attn}, {torch.get_num_threads()} threads)", file=sys.stderr)

    if not args.no_warmup:
        run_once(model, images, size, input_ids, context_mask, args.max_new_tokens)
    reps = [run_once(model, images, size, input_ids, context_mask, args.max_new_tokens) for _ in range(args.reps)]
    greedy_ids = reps[0][1]
    if any(ids != greedy_ids for _, ids in reps):
        print("warning: greedy ids differ between repetitions", file=sys.stderr)
    stage_ms = {k: statistics.median(ms[k] for ms, _ in reps) for k in reps[0][0]}
    per_s = lambda count, ms: count / (ms / 1e3)  # noqa: E731

    report = {
        "runtime": "pytorch",
        "model": str(args.model),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "attn": args.attn,
        "frames": len(images),
        "image_size": size,
        "vision_tokens": len(images) * n_tokens,
        "prompt_tokens": len(prompt_ids),
        "decode_steps": args.max_new_tokens - 1,
        "reps": args.reps,
        "warmup": not args.no_warmup,
        "load_s": load_s,
        "vision_frames_per_s": per_s(len(images), stage_ms["vision"]),
        "prefill_tokens_per_s": per_s(len(prompt_ids), stage_ms["prefill"]),
        "decode_tokens_per_s": per_s(1, stage_ms["decode_step"]),
        "time_to_first_token_ms": stage_ms["preprocess"] + stage_ms["vision"] + stage_ms["prefill"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stage_ms": stage_ms,
        "greedy_ids": greedy_ids,
        "prompt_ids": prompt_ids,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"pytorch {report['torch']} (transformers {report['transformers']}) on the CPU, {report['threads']} "
          f"threads, {args.dtype}, attn {args.attn}")
    print(f"frames: {report['frames']} of {size}x{size} -> {report['vision_tokens']} vision tokens; prompt "
          f"{report['prompt_tokens']} tokens; {report['decode_steps']} decode steps; median of {args.reps} reps")
    print(f"  vision encoder  {report['vision_frames_per_s']:>10.1f} frames/s")
    print(f"  prefill         {report['prefill_tokens_per_s']:>10.1f} tokens/s")
    print(f"  decode          {report['decode_tokens_per_s']:>10.1f} tokens/s")
    print(f"  first token     {report['time_to_first_token_ms']:>10.1f} ms")
    print(f"  peak memory     {report['peak_rss_mb']:>10.1f} MiB (process RSS)")
    print("  stage ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stage_ms.items()))
    print(f"  greedy ids: {greedy_ids}")


if __name__ == "__main__":
    main()
