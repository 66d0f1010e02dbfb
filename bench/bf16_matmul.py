"""Is bf16 worth turning on here? bf16 against fp32 matmul throughput on this machine, interleaved, with repeats.

    python bench/bf16_matmul.py --size 1024 --repeats 5

Prints each repeat's GFLOP/s for both dtypes, then the median ratio bf16/fp32 with min and max, and what
``bf16: auto`` (pipelines/config.py: native_bf16) decides. On a CPU without AVX512-BF16/AMX, bf16 is
emulated: a ratio far below 1 is why the cpu tier says ``bf16: auto`` and not ``true``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from srl_rlvr.pipelines.config import native_bf16


def gflops(a: torch.Tensor, b: torch.Tensor, seconds: float) -> float:
    a @ b  # warm-up (oneDNN picks its kernel on the first call)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * a.size(0) * a.size(1) * b.size(1) * n / (time.perf_counter() - start) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024, help="square matrix side")
    p.add_argument("--repeats", type=int, default=5, help="rounds, order alternating")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per dtype per round")
    a = p.parse_args()
    torch.manual_seed(0)
    x, y = torch.randn(a.size, a.size), torch.randn(a.size, a.size)
    pairs = {torch.float32: (x, y), torch.bfloat16: (x.bfloat16(), y.bfloat16())}
    ratios = []
    for r in range(a.repeats):
        order = [torch.float32, torch.bfloat16] if r % 2 == 0 else [torch.bfloat16, torch.float32]
        rate = {dt: gflops(*pairs[dt], a.seconds) for dt in order}
        ratios.append(rate[torch.bfloat16] / rate[torch.float32])
        print(f"repeat {r + 1}: fp32 {rate[torch.float32]:.1f} GFLOP/s, bf16 {rate[torch.bfloat16]:.2f} GFLOP/s, "
              f"bf16/fp32 {ratios[-1]:.3f}")
    print(f"bf16/fp32 median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{a.repeats} repeats, {a.size}x{a.size}, {torch.get_num_threads()} threads); "
          f"bf16: auto here -> {native_bf16(use_cpu=not torch.cuda.is_available())}")


if __name__ == "__main__":
    main()
