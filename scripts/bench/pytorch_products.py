#!/usr/bin/env python3
"""PyTorch-CPU peer of `cargo bench --bench cpu_products -- prefill`: the same InternViT-300M
layer products on one 448² frame (1025 tokens × q|k|v, output projection, MLP up, MLP down),
`torch.nn.functional.linear` in float32 (MKL) and bfloat16 (oneDNN: AMX or AVX512-BF16 where
the CPU has them), weights and inputs uniform in [-0.5, 0.5). Prints the median of --reps
timed calls after 3 warm-ups, in multiply-adds per second, as criterion's throughput.

Run with the goldens venv (scripts/goldens/setup-venv.sh):

    .venv-goldens/bin/python scripts/bench/pytorch_products.py [--threads 2] [--reps 15]
"""
import argparse
import statistics
import time

import torch

SHAPES = [("qkv", 3072, 1024), ("proj", 1024, 1024), ("fc1", 4096, 1024), ("fc2", 1024, 4096)]
M = 1025


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    for name, n, k in SHAPES:
        x = torch.rand(M, k) - 0.5
        w = torch.rand(n, k) - 0.5
        for dtype in (torch.float32, torch.bfloat16):
            xx, ww = x.to(dtype), w.to(dtype)
            for _ in range(3):
                torch.nn.functional.linear(xx, ww)
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                torch.nn.functional.linear(xx, ww)
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"{name} {M}x{n}x{k} {str(dtype).removeprefix('torch.')}: "
                  f"{med * 1e3:.2f} ms, {M * n * k / med / 1e9:.1f} G multiply-adds/s")


if __name__ == "__main__":
    main()
