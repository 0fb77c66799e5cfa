#!/usr/bin/env python3
"""PyTorch-CPU peer of `linvt bench --model DIR` for Qwen2-VL / Qwen2.5-VL (hub layout).

Loads the directory with transformers' own `Qwen2VLForConditionalGeneration` or
`Qwen2_5_VLForConditionalGeneration` (by config.json's `architectures`), feeds it the clip the
Rust bench uses — `linvt`'s `moving_square_clip` (a light square moving corner to corner over a
gradient; `src/vlm/synthetic.rs`, ported bit for bit) of --frames frames at --size x --size —
through the model's own processor, and times, on the CPU:

  preprocess   the video processor on the clip: smart_resize, rescale, CLIP mean/std, temporal
               pairs, patch flattening (the clip is built before timing)
  vision       model.get_video_features: the ViT over every temporal group + the 2x2 merger
  prefill      the language model (Qwen2VLModel / Qwen2_5_VLModel with inputs_embeds) on the prompt
               embeddings with the video rows written at the <|video_pad|> positions (the embedding
               gather, the scatter and get_rope_index's 3-axis M-RoPE positions are not timed),
               KV cache on, then lm_head on the last row only -> first token by argmax
  decode_step  one greedy step with the KV cache (cache_position and M-RoPE positions
               `cache_position + rope_deltas` on all three axes, as transformers' generate
               builds them); the mean over --decode-steps steps

--reps timed repetitions, preceded by one untimed warm-up when --reps > 1 (unless --no-warmup);
every figure is the median over the repetitions, reported like `linvt bench --json`: vision
frames/s, prefill tokens/s, decode tokens/s (1 / decode_step), time to first token
(preprocess + vision + prefill), stage ms, prompt ids, greedy ids (the prefill's token plus
one per decode step), peak RSS (ru_maxrss: includes loading), and cpu_per_wall (process CPU
seconds per wall second over the timed reps: about --threads when nothing else competes for the
cores). Loading reads every parameter once (load_s includes it): bf16 weights stay on the
safetensors mmap, and the first pass would otherwise time page-ins. Decoding never stops early.
Afterwards, unless --no-generate-check, model.generate(max_new_tokens=decode_steps + 1,
greedy) runs once on the same processor outputs (untimed as a stage; its wall time is
reported) and its ids are compared with the manual loop's.

Processor and tokenizer: AutoProcessor.from_pretrained(DIR, use_fast=False) when the directory
has everything it needs (tokenizer files and a chat template); then the prompt is the
processor's chat template applied to one user turn [video, question] with the generation
prompt, and the processor expands the video pads. Otherwise (a directory written by
`linvt synth` has only config.json, preprocessor_config.json, tokenizer.json, ...): the video
processor is Qwen2VLVideoProcessor.from_pretrained(DIR) (transformers falls back to
preprocessor_config.json's min/max_pixels, mean, std when there is no
video_preprocessor_config.json — as linvt does), the tokenizer
PreTrainedTokenizerFast(tokenizer_file=DIR/tokenizer.json), and the prompt is written by hand,
exactly what Qwen2-VL's chat template writes:

  <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n<|vision_start|>
  + N x <|video_pad|> + <|vision_end|>{question}<|im_end|>\\n<|im_start|>assistant\\n

N = the video's merged tokens (grid t*h*w / merge_size^2). --processor image runs the clip
through Qwen2VLImageProcessor (use_fast=False: PIL bicubic resize, as linvt's) via its
deprecated `videos=` path instead of the video processor (torchvision resize); the two agree
exactly when no resize is needed (224 is a multiple of 28).

Qwen2.5-VL's time positions take second_per_grid_ts = temporal_patch_size / --fps (default 2,
what Qwen2_5_VLProcessor assumes when no fps is given).

Run with the goldens venv (scripts/goldens/setup-venv.sh); nothing is downloaded:

    .venv-goldens/bin/python scripts/bench/pytorch_qwen2vl.py --model DIR [--frames 8] [--size 224] \\
        [--question Q] [--decode-steps 8] [--reps 1] [--threads N] [--dtype bfloat16|float32] \\
        [--attn sdpa|eager] [--processor video|image] [--fps 2] [--no-warmup] [--no-generate-check] [--json]
"""
import argparse
import json
import os
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
from transformers import (  # noqa: E402
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

# The question of the hand-built prompt. linvt's InternVL bench asks
# "Describe what happens in this video." (src/vlm/bench_model.rs QUESTION); pass --question to match.
DEFAULT_QUESTION = "What happens in this video?"
SYSTEM = "You are a helpful assistant."
SQUARE = (245, 245, 235)  # src/vlm/synthetic.rs SQUARE
ARCHS = {
    "Qwen2VLForConditionalGeneration": Qwen2VLForConditionalGeneration,
    "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLForConditionalGeneration,
}


def fail(msg):
    sys.exit(f"pytorch_qwen2vl: {msg}")


def moving_square_clip(frames, size):
    """linvt's synthetic clip (src/vlm/synthetic.rs moving_square_clip), integer maths and all:
    (frames, size, size, 3) uint8 RGB."""
    side = max(size // 4, 1)
    travel = size - side
    y, x = np.mgrid[0:size, 0:size]
    ramp = lambda v, span: np.minimum(v * 255 // max(span, 1), 255)  # noqa: E731
    clip = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        step = t * travel // (frames - 1) if frames > 1 else 0
        inside = (x >= step) & (x < step + side) & (y >= step) & (y < step + side)
        rgb = np.stack([ramp(x, 4 * size), 40 + ramp(y, 2 * size),
                        ramp(x + y + t * size // max(frames, 1), 3 * size)], axis=-1)
        rgb[inside] = SQUARE
        clip[t] = rgb.astype(np.uint8)
    return clip


def read_config(model_dir):
    path = model_dir / "config.json"
    if not path.is_file():
        fail(f"{model_dir} is not a model directory (no config.json)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    arch = (cfg.get("architectures") or ["?"])[0]
    if arch not in ARCHS:
        fail(f"architecture {arch} is not supported (one of {', '.join(ARCHS)})")
    return cfg, arch


class Inputs:
    """The processor, the prompt and how they were obtained."""

    def __init__(self, model_dir, arch, frames, size, question, processor_kind, fps):
        self.clip = moving_square_clip(frames, size)
        self.is_25 = arch.startswith("Qwen2_5")
        self.fps = fps
        self.how = None
        processor = None
        try:
            processor = AutoProcessor.from_pretrained(model_dir, use_fast=False)
            if getattr(processor, "chat_template", None) is None:
                raise ValueError("the processor has no chat template")
        except Exception as e:  # missing tokenizer files or chat template: build it by hand
            note = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}" if str(e).strip() else type(e).__name__
            print(f"note: AutoProcessor.from_pretrained({model_dir}) unusable ({note}); building the "
                  "processor from preprocessor_config.json and the tokenizer from tokenizer.json", file=sys.stderr)
            processor = None
        if processor is not None:
            self.tokenizer = processor.tokenizer
            self.video_processor = processor.video_processor
            self.image_processor = processor.image_processor
            self.how = (f"AutoProcessor ({type(processor).__name__}: {type(self.tokenizer).__name__}, "
                        f"{type(self.video_processor).__name__}), chat template")
        else:
            tok_file = model_dir / "tokenizer.json"
            if not tok_file.is_file():
                fail(f"{model_dir} has no tokenizer.json")
            self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tok_file))
            self.video_processor = Qwen2VLVideoProcessor.from_pretrained(model_dir)
            self.image_processor = None
            self.how = ("Qwen2VLVideoProcessor.from_pretrained(dir) (preprocessor_config.json), "
                        "PreTrainedTokenizerFast(tokenizer_file=tokenizer.json), prompt by hand")
        if processor_kind == "image":
            if self.image_processor is None:
                self.image_processor = Qwen2VLImageProcessor.from_pretrained(model_dir, use_fast=False)
            self.how += "; pixels from Qwen2VLImageProcessor(use_fast=False, videos=)"
        self.processor_kind = processor_kind

        # Untimed first pass: the grid, the prompt ids.
        pv = self.preprocess()
        self.grid = pv["video_grid_thw"]
        merge = self.video_processor.merge_size
        self.n_video_tokens = int(self.grid.prod()) // merge ** 2
        if processor is not None:
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
            kw = {"fps": fps} if self.is_25 else {}
            enc = processor(text=[text], videos=[self.clip], return_tensors="pt", **kw)
            self.input_ids = enc["input_ids"]
            if not torch.equal(enc["video_grid_thw"], self.grid):
                fail(f"the processor's grid {enc['video_grid_thw'].tolist()} differs from {self.grid.tolist()}")
        else:
            text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>"
                    + "<|video_pad|>" * self.n_video_tokens
                    + f"<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
            self.input_ids = torch.tensor([self.tokenizer.encode(text, add_special_tokens=False)])
        self.text = text
        self.second_per_grid_ts = (torch.tensor([self.video_processor.temporal_patch_size / fps])
                                   if self.is_25 else None)

    def preprocess(self):
        """The clip's pixel values and grid (what the preprocess stage times)."""
        if self.processor_kind == "image":
            out = self.image_processor(images=None, videos=[list(self.clip)], return_tensors="pt")
        else:
            out = self.video_processor(videos=[self.clip], return_tensors="pt")
        return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}


def rss_mb(field="VmRSS"):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@torch.inference_mode()
def run_once(model, inp, video_token_id, decode_steps):
    """One pass of every stage; returns ({stage: ms}, greedy ids)."""
    core = model.model  # Qwen2VLModel / Qwen2_5_VLModel
    t0 = time.perf_counter()
    pv = inp.preprocess()
    t1 = time.perf_counter()
    video_embeds = torch.cat(model.get_video_features(pv["pixel_values_videos"], pv["video_grid_thw"]), dim=0)
    t2 = time.perf_counter()
    ids = inp.input_ids
    embeds = core.get_input_embeddings()(ids)
    mask = (ids == video_token_id).unsqueeze(-1).expand_as(embeds)
    if int(mask.sum()) != video_embeds.numel():
        fail(f"{int((ids == video_token_id).sum())} video pads in the prompt, {video_embeds.shape[0]} video rows")
    embeds = embeds.masked_scatter(mask, video_embeds.to(embeds.dtype))
    rope_kw = {"second_per_grid_ts": inp.second_per_grid_ts} if inp.is_25 else {}
    position_ids, rope_deltas = core.get_rope_index(ids, None, pv["video_grid_thw"], attention_mask=None, **rope_kw)
    n = ids.shape[1]
    t3 = time.perf_counter()
    out = core(inputs_embeds=embeds, position_ids=position_ids, cache_position=torch.arange(n), use_cache=True)
    logits = model.lm_head(out.last_hidden_state[:, -1:])
    greedy = [int(logits[0, -1].argmax())]
    t4 = time.perf_counter()
    cache = out.past_key_values
    for pos in range(n, n + decode_steps):
        cache_position = torch.tensor([pos])
        pos3 = (cache_position + rope_deltas).view(1, 1, 1).expand(3, 1, 1)
        out = core(input_ids=torch.tensor([greedy[-1:]]), position_ids=pos3, cache_position=cache_position,
                   past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        greedy.append(int(model.lm_head(out.last_hidden_state[:, -1:])[0, -1].argmax()))
    t5 = time.perf_counter()
    ms = {"preprocess": (t1 - t0) * 1e3, "vision": (t2 - t1) * 1e3, "prefill": (t4 - t3) * 1e3,
          "decode_step": (t5 - t4) * 1e3 / max(decode_steps, 1)}
    return ms, greedy


@torch.inference_mode()
def generate_check(model, inp, decode_steps):
    pv = inp.preprocess()
    kw = dict(input_ids=inp.input_ids, attention_mask=torch.ones_like(inp.input_ids), **pv)
    if inp.is_25:
        kw["second_per_grid_ts"] = inp.second_per_grid_ts
    model.model.rope_deltas = None
    t = time.perf_counter()
    out = model.generate(**kw, max_new_tokens=decode_steps + 1, do_sample=False, num_beams=1,
                         temperature=None, top_p=None, top_k=None)
    ms = (time.perf_counter() - t) * 1e3
    return [int(i) for i in out[0, inp.input_ids.shape[1]:]], ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="Qwen2-VL / Qwen2.5-VL directory (hub layout)")
    ap.add_argument("--frames", type=int, default=8, help="frames of the synthetic clip")
    ap.add_argument("--size", type=int, default=224, help="frame side in pixels")
    ap.add_argument("--question", default=DEFAULT_QUESTION)
    ap.add_argument("--decode-steps", type=int, default=8, help="timed greedy decode steps after the prefill's token")
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions (median reported)")
    ap.add_argument("--no-warmup", action="store_true", help="no untimed warm-up even when --reps > 1")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch.set_num_threads")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    ap.add_argument("--processor", choices=("video", "image"), default="video",
                    help="video: Qwen2VLVideoProcessor (what Qwen2VLProcessor uses for videos); "
                         "image: Qwen2VLImageProcessor(use_fast=False)'s deprecated videos= path")
    ap.add_argument("--fps", type=float, default=2.0, help="Qwen2.5-VL: the clip's rate for its time positions")
    ap.add_argument("--no-generate-check", action="store_true", help="skip the model.generate comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    if args.frames < 2 or args.size < 28 or args.reps < 1 or args.threads < 1 or args.decode_steps < 1:
        fail("--frames must be >= 2, --size >= 28, --reps, --threads and --decode-steps >= 1")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    cfg, arch = read_config(args.model)
    inp = Inputs(args.model, arch, args.frames, args.size, args.question, args.processor, args.fps)
    video_token_id = cfg.get("video_token_id") or cfg.get("text_config", {}).get("video_token_id")
    if inp.tokenizer.convert_tokens_to_ids("<|video_pad|>") != video_token_id:
        fail(f"the tokenizer's <|video_pad|> is not config.json's video_token_id {video_token_id}")
    prompt_ids = inp.input_ids[0].tolist()
    if prompt_ids.count(video_token_id) != inp.n_video_tokens:
        fail(f"the prompt has {prompt_ids.count(video_token_id)} video pads, expected {inp.n_video_tokens}")
    max_pos = cfg.get("max_position_embeddings") or cfg.get("text_config", {}).get("max_position_embeddings")
    if max_pos and len(prompt_ids) + args.decode_steps + 1 > max_pos:
        fail(f"prompt ({len(prompt_ids)} tokens) + {args.decode_steps + 1} new tokens exceeds the context of {max_pos}")

    t = time.perf_counter()
    model, info = ARCHS[arch].from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn,
                                              output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    if missing or info["unexpected_keys"] or info["mismatched_keys"]:
        fail(f"weights do not match {arch}: missing {missing}, unexpected {info['unexpected_keys']}, "
             f"mismatched {info['mismatched_keys']}")
    model.eval()
    # from_pretrained leaves tensors of the checkpoint's dtype on the safetensors mmap, paged in on
    # first use: read every parameter once here, so the first timed pass measures compute, not disk
    # (linvt reads its weights into memory at load too).
    with torch.inference_mode():
        for p in model.parameters():
            p.sum()
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"loaded {args.model} ({arch}) in {load_s:.2f} s ({n_params / 1e6:.1f} M parameters, {args.dtype}, "
          f"attn {model.config._attn_implementation}, {torch.get_num_threads()} threads; RSS {rss_loaded:.0f} MiB)",
          file=sys.stderr)
    print(f"inputs: {inp.how}; grid {inp.grid.tolist()}, {inp.n_video_tokens} video tokens, "
          f"prompt {len(prompt_ids)} tokens", file=sys.stderr)

    warmup = args.reps > 1 and not args.no_warmup
    if warmup:
        run_once(model, inp, video_token_id, args.decode_steps)
    reps = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(args.reps):
        reps.append(run_once(model, inp, video_token_id, args.decode_steps))
        print(f"rep {i + 1}/{args.reps}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in reps[-1][0].items()),
              file=sys.stderr)
    cpu_per_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    greedy_ids = reps[0][1]
    if any(ids != greedy_ids for _, ids in reps):
        print("warning: greedy ids differ between repetitions", file=sys.stderr)
    stage_ms = {k: statistics.median(ms[k] for ms, _ in reps) for k in reps[0][0]}
    per_s = lambda count, ms: count / (ms / 1e3)  # noqa: E731

    gen_ids, gen_ms = (None, None)
    if not args.no_generate_check:
        gen_ids, gen_ms = generate_check(model, inp, args.decode_steps)
        k = min(len(gen_ids), len(greedy_ids))
        if gen_ids[:k] != greedy_ids[:k]:
            print(f"warning: model.generate's ids {gen_ids} differ from the manual loop's {greedy_ids}",
                  file=sys.stderr)

    t_pix, h_pix, w_pix = inp.grid[0].tolist()
    patch = inp.video_processor.patch_size
    report = {
        "runtime": "pytorch",
        "model": str(args.model),
        "architecture": arch,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "attn": model.config._attn_implementation,
        "inputs": inp.how,
        "frames": args.frames,
        "image_size": args.size,
        "resized": [h_pix * patch, w_pix * patch],
        "video_grid_thw": inp.grid[0].tolist(),
        "video_path": "frames",
        "vision_tokens": inp.n_video_tokens,
        "linvt_tokens": inp.n_video_tokens,  # `linvt bench`'s name for the visual tokens in the prompt
        "prompt_tokens": len(prompt_ids),
        "decode_steps": args.decode_steps,
        "reps": args.reps,
        "warmup": warmup,
        "load_s": load_s,
        "vision_frames_per_s": per_s(args.frames, stage_ms["vision"]),
        "prefill_tokens_per_s": per_s(len(prompt_ids), stage_ms["prefill"]),
        "decode_tokens_per_s": per_s(1, stage_ms["decode_step"]),
        "time_to_first_token_ms": stage_ms["preprocess"] + stage_ms["vision"] + stage_ms["prefill"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_load_mb": rss_loaded,
        # Process CPU seconds per wall second over the timed reps: about `threads` on an idle
        # machine, less when something else competes for the cores.
        "cpu_per_wall": cpu_per_wall,
        "loadavg": list(os.getloadavg()),
        "stage_ms": stage_ms,
        "greedy_ids": greedy_ids,
        "generate_ids": gen_ids,
        "generate_matches": None if gen_ids is None else gen_ids == greedy_ids,
        "generate_ms": gen_ms,
        "prompt_ids": prompt_ids,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"pytorch {report['torch']} (transformers {report['transformers']}) on the CPU, {report['threads']} "
          f"threads, {args.dtype}, attn {report['attn']}; {arch}")
    print(f"clip: {args.frames} frames of {args.size}x{args.size} (-> {report['resized'][0]}x{report['resized'][1]}, "
          f"grid {report['video_grid_thw']}) -> {inp.n_video_tokens} video tokens; prompt {len(prompt_ids)} tokens; "
          f"{args.decode_steps} decode steps; median of {args.reps} reps{' after a warm-up' if warmup else ''}")
    print(f"  vision encoder  {report['vision_frames_per_s']:>10.2f} frames/s")
    print(f"  prefill         {report['prefill_tokens_per_s']:>10.1f} tokens/s")
    print(f"  decode          {report['decode_tokens_per_s']:>10.2f} tokens/s")
    print(f"  first token     {report['time_to_first_token_ms']:>10.1f} ms")
    print(f"  peak memory     {report['peak_rss_mb']:>10.1f} MiB (process RSS; {rss_loaded:.0f} MiB after load)")
    print("  stage ms: " + ", ".join(f"{k} {v:.2f}" for k, v in stage_ms.items()))
    print(f"  CPU use:    {cpu_per_wall:.2f} cores busy per wall second over the timed reps "
          f"({report['threads']} threads; load average {report['loadavg'][0]:.2f})")
    print(f"  greedy ids: {greedy_ids}")
    if gen_ids is not None:
        print(f"  generate:   {gen_ids} ({'same' if gen_ids == greedy_ids else 'DIFFERENT'}; {gen_ms:.0f} ms)")


if __name__ == "__main__":
    main()
