#!/usr/bin/python3
"""PyTorch's side of bench/compare.sh: the cases of convd-bench, timed the same way.

    torch_bench.py corr2d --input N,C,H,W --kernel Cout,C,kh,kw [--padding P] [--threads T]
                          [--mode fwd|fwd+bwd|bwdk] [--repeats R]
    torch_bench.py train --input N,C,H,W --kernel Cout,C,kh,kw [--bias] [--padding P]
                         [--steps S] [--threads T] [--lr LR]

Prints one JSON line with the keys of convd-bench --json (impl "torch", or --label). corr2d times
F.conv2d (with a zero bias, as convd-bench passes one) under torch.no_grad() for fwd, or the
forward plus y.backward(dY) (dX, dK and dbias) for fwd+bwd, or the weights gradient alone
(aten.convolution_backward with only dK asked for) for bwdk: two untimed passes, then repeats
until 0.5 s have passed (at least 5, at most 200). X, K and dY are filled as bench/fill.h says,
and the line carries the check sums of Y (fwd) or dK (bwdk). train runs nn.Conv2d + torch.optim.SGD + the
MSE loss, reading loss.item() every step as convd's step callback does, and reports the median
step time. Run with Debian's /usr/bin/python3 (python3-torch).

PyTorch allocates every output afresh. With glibc's defaults a large one (16 MiB here) is often
a new mmap whose pages fault in during the call, which can cost more than the convolution;
bench/compare.sh therefore also runs this script with MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (label "torch-warm"), so outputs reuse heap memory and the time is
the arithmetic alone."""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

SEED_X, SEED_K, SEED_DY, SEED_W = 1, 2, 3, 4


def fill(shape, seed):
    """bench/fill.h's cv_bench_fill over a tensor of this shape."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    h = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    h ^= np.uint32((seed * 0x9E3779B9) & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    v = (h >> np.uint32(8)).astype(np.float64) / 16777216.0 * 2.0 - 1.0
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def check(t):
    """bench/fill.h's cv_bench_check: sum, sum weighted by fill(seed 4), sum of |y|."""
    y = t.detach().reshape(-1).double()
    w = fill((y.numel(),), SEED_W).double()
    return [float(y.sum()), float((y * w).sum()), float(y.abs().sum())]


def dims(text):
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError("want N,C,H,W")
    return parts


def repeat(fn, repeats):
    for _ in range(2):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < 200:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1e3)
        if (repeats and len(times) >= repeats) or (
            not repeats and len(times) >= 5 and t1 - start >= 0.5
        ):
            break
    return times


def bench_corr2d(a):
    x = fill(a.input, SEED_X)
    k = fill(a.kernel, SEED_K)
    b = torch.zeros(a.kernel[0])
    out = {}
    if a.mode == "fwd":

        def fn():
            with torch.no_grad():
                out["y"] = F.conv2d(x, k, b, padding=a.padding)

        passes = 1
    elif a.mode == "bwdk":
        n, c, h, w = a.input
        co, _, kh, kw = a.kernel
        gy = fill((n, co, h + 2 * a.padding - kh + 1, w + 2 * a.padding - kw + 1), SEED_DY)

        def fn():
            with torch.no_grad():
                out["y"] = torch.ops.aten.convolution_backward(
                    gy, x, k, None, [1, 1], [a.padding, a.padding], [1, 1], False, [0, 0], 1,
                    [False, True, False])[1]

        passes = 1
    else:
        x.requires_grad_(True)
        k.requires_grad_(True)
        b.requires_grad_(True)
        with torch.no_grad():
            gy = torch.rand_like(F.conv2d(x, k, b, padding=a.padding))

        def fn():
            x.grad = k.grad = b.grad = None
            F.conv2d(x, k, b, padding=a.padding).backward(gy)

        passes = 3
    times = repeat(fn, a.repeats)
    n, c, h, w = a.input
    co, _, kh, kw = a.kernel
    oh, ow = h + 2 * a.padding - kh + 1, w + 2 * a.padding - kw + 1
    flops = 2.0 * n * co * oh * ow * c * kh * kw * passes
    med = statistics.median(times)
    return {
        "bench": "corr2d",
        "impl": a.label,
        "torch": torch.__version__,
        "input": a.input,
        "kernel": a.kernel,
        "padding": a.padding,
        "threads": a.threads,
        "mode": a.mode,
        "repeats": len(times),
        "median_ms": round(med, 4),
        "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4),
        "gflops": round(flops / med * 1e-6, 2),
        **({"check": check(out["y"])} if "y" in out else {}),
    }


def bench_train(a):
    torch.manual_seed(0)
    n, c, h, w = a.input
    co, _, kh, kw = a.kernel
    x = torch.rand(n, c, h, w) * 2 - 1
    true = torch.nn.Conv2d(c, co, (kh, kw), padding=a.padding, bias=a.bias)
    with torch.no_grad():
        y = true(x)
    conv = torch.nn.Conv2d(c, co, (kh, kw), padding=a.padding, bias=a.bias)
    opt = torch.optim.SGD(conv.parameters(), lr=a.lr)
    times, loss = [], float("nan")
    last = time.perf_counter()
    for _ in range(a.steps):
        opt.zero_grad()
        l = ((conv(x) - y) ** 2).mean()
        l.backward()
        opt.step()
        loss = l.item()
        now = time.perf_counter()
        times.append((now - last) * 1e3)
        last = now
    med = statistics.median(times)
    return {
        "bench": "train",
        "impl": a.label,
        "torch": torch.__version__,
        "input": a.input,
        "kernel": a.kernel,
        "padding": a.padding,
        "bias": a.bias,
        "loss": "mse",
        "optim": "sgd",
        "threads": a.threads,
        "steps": len(times),
        "ms_per_step": round(med, 4),
        "median_ms": round(med, 4),
        "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4),
        "last_loss": loss,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cmd", choices=["corr2d", "train"])
    p.add_argument("--input", type=dims, required=True)
    p.add_argument("--kernel", type=dims, required=True)
    p.add_argument("--padding", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", choices=["fwd", "fwd+bwd", "bwdk"], default="fwd")
    p.add_argument("--repeats", type=int, default=0)
    p.add_argument("--bias", action="store_true")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--label", default="torch", help='the "impl" of the JSON line')
    p.add_argument("--json", action="store_true", help="accepted for symmetry; always JSON")
    a = p.parse_args()
    if a.input[1] != a.kernel[1]:
        p.error("input and kernel channel counts differ")
    torch.set_num_threads(a.threads)
    out = bench_corr2d(a) if a.cmd == "corr2d" else bench_train(a)
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
