#!/usr/bin/python3
"""Renders bench/RESULTS.md from the JSON lines bench/compare.sh collected.

    report.py LOG THREADS > RESULTS.md

Each implementation's best round is kept (its median over that round's repeats). The bound of
a case is max(flops / 233 GFLOP/s, bytes / 34 GB/s): the fp32 FMA peak and the memory
bandwidth issue 6 gives for 2 threads of this machine. Bytes are the tensors read and written
once (for a training step: X and Yhat for the forward pass, Yhat, Y and dY for the loss, X and dY
for the kernel gradient: 7 planes). A % above 100 means the data came from cache (32 MiB L3).
The table keeps each row's median and shows the same round's minimum beside it."""

import json
import platform
import subprocess
import sys

PEAK_GFLOPS = 233.0
MEM_GBS = 34.0


def machine():
    model, family, number, flags = "?", "?", "?", ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            if key == "Model name":
                model = value.strip()
            elif key == "CPU family":
                family = value.strip()
            elif key == "Model":
                number = value.strip()
            elif key == "Flags":
                flags = value
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx2", "fma") if f" {f}" in flags]
    model = f"{model} (family {family}, model {number}; {', '.join(isa) or 'no AVX'})"
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    return model, cores, gcc.splitlines()[0] if gcc else "?"


def key(d):
    return (d["bench"], tuple(d["input"]), tuple(d["kernel"]), d.get("padding", 0), d.get("mode", ""))


def main():
    log, threads = sys.argv[1], sys.argv[2]
    best, meta, peaks = {}, {}, []
    for line in open(log):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if d.get("bench") == "peak":
            peaks.append(d)
            continue
        if "meta" in d:
            meta[d["meta"]] = d
            continue
        k = key(d) + (d["impl"],)
        if k not in best or d["median_ms"] < best[k]["median_ms"]:
            best[k] = d
    order = []
    for k in best:
        if k[:5] not in order:
            order.append(k[:5])
    tally = {"torch": [0, 0], "torch-warm": [0, 0]}  # targets met, targets
    # The forward table, then training, then the fwd+bwd rows (stable within each).
    order.sort(key=lambda k: 0 if k[0] == "corr2d" and k[4] != "fwd+bwd" else 1 if k[0] == "train" else 2)
    model, cores, gcc = machine()
    torch_version = next((d.get("torch") for d in best.values() if d.get("torch")), "?")
    isa = next((d["isa"] for d in best.values() if d["impl"] == "fast"), "?")
    out = []
    out.append("# convd compute benchmark: convd vs PyTorch, side by side\n")
    out.append(
        "Written by `bench/compare.sh` (do not edit by hand). Forward passes of issue 6's table, "
        "one training step, and for information forward + both gradients (fwd+bwd: no target); "
        "each implementation timed in the same run, cases interleaved.\n"
    )
    out.append(f"- Machine: {model}, {cores} cores; {platform.system()} {platform.release()}")
    out.append(f"- Date: {meta.get('start', {}).get('date', '?')}; threads: {threads}")
    out.append(f"- convd: `convd-bench` built with {gcc}, kernels: **{isa}** (picked at run time)")
    out.append(f"- PyTorch {torch_version} (Debian python3-torch), `torch.set_num_threads({threads})`")
    out.append(
        f"- Load average at start / end: {meta.get('start', {}).get('load', '?')} / "
        f"{meta.get('end', {}).get('load', '?')} (other work on the machine shows up here)\n"
    )
    out.append(
        "| shape (N,C,H,W ; Cout,kh,kw ; pad) | convd ms (min) | naive ms | torch ms (min) | "
        "torch-warm ms (min) | vs torch | vs torch-warm | target | GFLOP/s | bound ms | % of bound |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    targets = {
        ((1, 1, 1024, 1024), (1, 1, 3, 3)): 10,
        ((1, 1, 1024, 1024), (1, 1, 7, 7)): 10,
        ((1, 1, 4096, 4096), (1, 1, 3, 3)): 10,
        ((1, 1, 2048, 2048), (1, 1, 1, 2)): 10,
        ((8, 64, 56, 56), (64, 64, 3, 3)): 1,
        ((1, 3, 512, 512), (16, 3, 5, 5)): 1.5,
    }
    for k in order:
        bench, inp, ker, pad, mode = k
        fast = best.get(k + ("fast",))
        naive = best.get(k + ("naive",))
        tor = best.get(k + ("torch",))
        warm = best.get(k + ("torch-warm",))
        if fast is None:
            continue
        n, c, h, w = inp
        co, _, kh, kw = ker
        oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
        flops = 2.0 * n * co * oh * ow * c * kh * kw
        ms = fast["median_ms"]
        if bench == "corr2d" and mode == "fwd+bwd":
            shape = f"{','.join(map(str, inp))} ; {co},{kh},{kw} ; {pad} — fwd+bwd"
            flops *= 3  # forward, input gradient, kernel gradient
            nbytes = 4.0 * 3 * (n * c * h * w + n * co * oh * ow + co * c * kh * kw)
            target, target_s = None, "–"
        elif bench == "corr2d":
            shape = f"{','.join(map(str, inp))} ; {co},{kh},{kw} ; {pad}"
            nbytes = 4.0 * (n * c * h * w + n * co * oh * ow + co * c * kh * kw)
            target = targets.get((inp, ker))
            target_s = f"≥ {target:g}x" if target else ""
        else:
            shape = f"train: {','.join(map(str, inp))} ; {co},{kh},{kw}{' + bias' if fast.get('bias') else ''}, SGD, MSE (ms/step)"
            flops *= 2  # forward + kernel gradient
            nbytes = 4.0 * 7 * n * co * oh * ow
            target_s = "≥ 5x"
            target = 5
        bound = max(flops / (PEAK_GFLOPS * 1e9), nbytes / (MEM_GBS * 1e9)) * 1e3
        kind = "compute" if flops / PEAK_GFLOPS / 1e9 > nbytes / MEM_GBS / 1e9 else "memory"
        def timing(d):
            return f"{d['median_ms']:.2f} ({d['min_ms']:.2f})" if d else "–"

        def versus(d):
            if d is None:
                return "–"
            ratio = d["median_ms"] / ms
            shown = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"
            if target is None:
                return shown
            t = tally[d["impl"]]
            t[0] += ratio >= target
            t[1] += 1
            return f"{shown} {'✓' if ratio >= target else '✗'}"

        row = f"| {shape} | {ms:.3f} ({fast['min_ms']:.3f}) | "
        row += f"{naive['median_ms']:.1f} | " if naive else "– | "
        row += f"{timing(tor)} | {timing(warm)} | {versus(tor)} | {versus(warm)} | {target_s} | "
        out.append(row)
        out[-1] += f"{flops / ms * 1e-6:.1f} | {bound:.3f} ({kind}) | {bound / ms * 100:.0f}% |"
    out.append("")
    out.append(
        f"Targets met: {tally['torch'][0]} of {tally['torch'][1]} against *torch*, "
        f"{tally['torch-warm'][0]} of {tally['torch-warm'][1]} against *torch-warm*.\n"
    )
    out.append(
        "convd ms, naive ms and torch ms are medians over a run's repeats (training: over its "
        "steps), best of the rounds; (min) is that round's fastest repeat, which shows how much "
        "the median lost to other work on the machine. *torch* is PyTorch as it comes: each call "
        "allocates its output, and for large outputs glibc often hands out a fresh mmap whose "
        "pages fault in during the call (the issue's PyTorch column matches this mode). "
        "*torch-warm* runs the same script with glibc told to keep outputs on the heap "
        "(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_), which leaves the arithmetic alone; "
        "convd writes into a caller-allocated output, so that is the like-for-like kernel "
        "comparison. *vs* = torch ms / convd ms, from the medians. *naive* is "
        "`convd-bench --impl naive`: the definition as a plain direct loop with a bounds check "
        "per tap, output rows split over the same threads. GFLOP/s counts 2 flops per "
        f"multiply-add. The bound is max(flops / {PEAK_GFLOPS:g} GFLOP/s, bytes / {MEM_GBS:g} GB/s) "
        "with every tensor read or written once, so above 100% means the data came from cache; "
        f"{PEAK_GFLOPS:g} GFLOP/s is the issue's figure. GFLOP/s and % of bound count the flops of "
        "the definition, so for the Winograd paths they are effective rates: F(2x2,3x3) (3x3 "
        "kernels, >= 16 channels each way) does 2.25x fewer multiply-adds and the row F(4,5) "
        "(5-column kernels, >= 4 output channels) 2.5x fewer."
    )
    if peaks:
        half = len(peaks) // 2
        def peak_s(ds):
            return ", ".join(f"{d['gflops']:.0f} GFLOP/s on {d['threads']} thread{'s' if d['threads'] > 1 else ''}" for d in ds)
        out.append("")
        out.append(
            f"FMA peak measured in this run (`convd-bench peak`: independent {peaks[0]['isa']} FMA "
            f"chains in registers): {peak_s(peaks[:half])} at the start, {peak_s(peaks[half:])} at "
            "the end. When the threads reach little more than one thread's peak, the host ran "
            "this machine's cores on one physical core (or took one away) for that moment, and "
            "every multi-threaded number of the run is pulled down with it."
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
