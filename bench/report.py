#!/usr/bin/python3
"""Renders bench/RESULTS.md from the JSON lines bench/compare.sh collected.

    report.py LOG THREADS > RESULTS.md

Each implementation's best round is kept (its median over that round's repeats). Every
implementation's output check sums (bench/fill.h) are compared with convd's. The summary names
the best anchor per case and whether issue 14's target is met; the roofline of a case is
max(flops / FMA peak, bytes / triad bandwidth) with the peak and bandwidth measured in the same
run (the best of its start and end), bytes counting every tensor read or written once."""

import json
import platform
import subprocess
import sys

# The anchors of each case: which labels count as "the best anchor" (all but convd's own).
CONVD = {"fast"}
NOT_ANCHORS = {"fast", "naive"}


def machine():
    model, flags = "?", ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            if key == "Model name":
                model = value.strip()
            elif key == "Flags":
                flags = value
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx2", "fma") if f" {f}" in flags]
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    return f"{model} ({', '.join(isa) or 'no AVX'})", cores, gcc.splitlines()[0] if gcc else "?"


def key(d):
    return (d["bench"], tuple(d["input"]), tuple(d["kernel"]), d.get("padding", 0), d.get("mode", ""))


def shape_s(k):
    bench, inp, ker, pad, mode = k
    s = f"{','.join(map(str, inp))} ; {ker[0]},{ker[2]},{ker[3]} ; {pad}"
    if bench == "train":
        return f"train step {s} + bias (SGD, MSE)"
    return {"fwd": s, "bwdk": f"kernel gradient {s}", "fwd+bwd": f"fwd+bwd {s}"}.get(mode, s)


def flops_bytes(k):
    bench, (n, c, h, w), (co, _, kh, kw), pad, mode = k
    oh, ow = h + 2 * pad - kh + 1, w + 2 * pad - kw + 1
    macs = n * co * oh * ow * c * kh * kw
    x, y, kk = n * c * h * w, n * co * oh * ow, co * c * kh * kw
    if bench == "train":  # forward, loss (Yhat, Y, dY), kernel gradient (X, dY)
        return 4.0 * macs, 4.0 * (x + y + y + 3 * y + x + y + 2 * kk)
    if mode == "fwd+bwd":
        return 6.0 * macs, 4.0 * 3 * (x + y + kk)
    return 2.0 * macs, 4.0 * (x + y + kk)


def target_of(k):
    """(description, anchor labels the ratio is taken against, minimum ratio) or None."""
    bench, inp, ker, pad, mode = k
    if bench == "corr2d" and mode == "fwd" and inp[:2] == (1, 1) and ker[:2] == (1, 1):
        return [("≥ 1.1x OpenCV (2 threads)", {"opencv"}, 1.1)]
    if bench == "corr2d" and mode == "fwd" and inp == (8, 64, 56, 56):
        with_r = {"onednn-auto", "onednn-direct", "onednn-winograd"}
        return [
            ("≥ 1.0x best oneDNN with reorders", with_r, 1.0),
            ("≥ 0.8x oneDNN Winograd without reorders", {"onednn-winograd-blocked"}, 0.8),
        ]
    if bench == "corr2d" and mode == "bwdk" and inp == (8, 64, 56, 56):
        return [("≥ 1.0x best oneDNN backward-weights with reorders",
                 {"onednn-auto", "onednn-direct", "onednn-winograd"}, 1.0)]
    if bench == "corr2d" and mode == "fwd" and inp == (1, 3, 512, 512):
        return [("keep the lead: ≥ 1.0x the best anchor", None, 1.0)]
    if bench == "train" and inp == (1, 1, 512, 512):
        return [("keep the lead: ≥ 1.0x the best anchor", None, 1.0)]
    return None


def main():
    log, threads = sys.argv[1], sys.argv[2]
    best, meta, peaks, triads, errors, rounds, acc = {}, {}, [], [], [], [], []
    for line in open(log):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if d.get("bench") == "peak":
            peaks.append(d)
            continue
        if d.get("bench") == "triad":
            triads.append(d)
            continue
        if d.get("bench") == "accuracy":
            acc.append(d)
            continue
        if d.get("meta") == "round":
            rounds.append(d)
            continue
        if "meta" in d:
            meta[d["meta"]] = d
            continue
        if "error" in d:
            if d not in errors:
                errors.append(d)
            continue
        k = key(d) + (d["impl"],)
        if k not in best or d["median_ms"] < best[k]["median_ms"]:
            best[k] = d
    cases = []
    for k in best:
        if k[:5] not in cases:
            cases.append(k[:5])
    peak = max((d["gflops"] for d in peaks if str(d["threads"]) == threads), default=0.0)
    bw = max((d["gbs"] for d in triads), default=0.0)
    model, cores, gcc = machine()
    out = []
    out.append("# convd compute benchmark: convd against oneDNN, OpenCV and PyTorch\n")
    out.append(
        "Written by `bench/compare.sh` (do not edit by hand): issue 14's cases, every "
        "implementation timed in the same run, cases interleaved, best of the rounds, every "
        "output checked against convd's.\n"
    )
    out.append(f"- Machine: {model}, {cores} cores; {platform.system()} {platform.release()}")
    out.append(
        f"- Run: {meta.get('start', {}).get('date', '?')} to {meta.get('end', {}).get('date', '?')}; "
        f"threads: {threads}; {len(rounds)} rounds"
    )
    versions = {}
    for d in best.values():
        for lib in ("onednn", "opencv", "torch"):
            if lib in d:
                versions[lib] = d[lib]
    isa = next((d["isa"] for d in best.values() if d["impl"] == "fast"), "?")
    out.append(f"- convd: `convd-bench` built with {gcc}, kernels **{isa}** (picked at run time)")
    out.append(
        f"- Anchors: oneDNN {versions.get('onednn', '–')} (Debian libdnnl-dev, C API), "
        f"OpenCV {versions.get('opencv', '–')} (Debian libopencv-dev, `cv::filter2D`, "
        f"`cv::setNumThreads({threads})`), PyTorch {versions.get('torch', '–')} (Debian "
        "python3-torch, outputs kept on the heap)"
    )
    loads = [meta.get("start", {}).get("load", "?")] + [r["load"] for r in rounds] + [
        meta.get("end", {}).get("load", "?")
    ]
    out.append(
        "- **Shared machine**: other agents ran builds and tests during this run. Load average "
        f"(1/5/15 min) at the start, before each round and at the end: {' | '.join(loads)}"
    )
    half = len(peaks) // 2

    def peak_s(ds):
        return ", ".join(f"{d['gflops']:.0f} GFLOP/s on {d['threads']} thread(s)" for d in ds)

    out.append(
        f"- Roofline measured in this run: FMA peak {peak_s(peaks[:half])} at the start, "
        f"{peak_s(peaks[half:])} at the end; triad "
        + ", ".join(f"{d['gbs']:.1f} GB/s" for d in triads)
        + f" (start, end). The roofline uses the best: {peak:.0f} GFLOP/s, {bw:.1f} GB/s.\n"
    )

    # Summary: one row per case.
    out.append("## Summary\n")
    out.append(
        "| case | convd ms | best anchor | anchor ms | anchor / convd | target | met | "
        "roofline ms | convd % of roofline | outputs agree |"
    )
    out.append("|---|---:|---|---:|---:|---|---|---:|---:|---|")
    met_n = tot_n = 0
    for c in cases:
        fast = best.get(c + ("fast",))
        if fast is None:
            continue
        ms = fast["median_ms"]
        anchors = {k[5]: d for k, d in best.items() if k[:5] == c and k[5] not in NOT_ANCHORS}
        a_best = min(anchors.items(), key=lambda kv: kv[1]["median_ms"]) if anchors else None
        flops, nbytes = flops_bytes(c)
        roof = max(flops / (peak * 1e9) if peak else 0, nbytes / (bw * 1e9) if bw else 0) * 1e3
        kind = "compute" if peak and bw and flops / peak > nbytes / bw else "memory"
        agree = check_agree(c, best)
        tgts = target_of(c) or []
        t_s, m_s = [], []
        for desc, labels, ratio in tgts:
            pool = {l: d for l, d in anchors.items() if labels is None or l in labels}
            if not pool:
                t_s.append(desc)
                m_s.append("no anchor")
                continue
            lab, d = min(pool.items(), key=lambda kv: kv[1]["median_ms"])
            r = d["median_ms"] / ms
            ok = r >= ratio
            met_n += ok
            tot_n += 1
            t_s.append(desc)
            m_s.append(f"{'✓' if ok else '✗'} {r:.2f}x vs {lab}")
        row = f"| {shape_s(c)} | {ms:.3f} | "
        if a_best:
            row += f"{a_best[0]} | {a_best[1]['median_ms']:.3f} | {a_best[1]['median_ms'] / ms:.2f}x | "
        else:
            row += "– | – | – | "
        row += f"{'; '.join(t_s) or '–'} | {'; '.join(m_s) or '–'} | {roof:.3f} ({kind}) | "
        row += f"{roof / ms * 100:.0f}% | {agree} |"
        out.append(row)
    out.append("")
    out.append(f"**Targets met: {met_n} of {tot_n}.**\n")

    # Every implementation of every case.
    out.append("## Every implementation\n")
    out.append("| case | implementation | kernel | median ms | min ms | GFLOP/s (effective) | vs convd |")
    out.append("|---|---|---|---:|---:|---:|---:|")
    for c in cases:
        fast = best.get(c + ("fast",))
        rows = sorted(((k[5], d) for k, d in best.items() if k[:5] == c), key=lambda kv: kv[1]["median_ms"])
        flops, _ = flops_bytes(c)
        for lab, d in rows:
            name = {"fast": "**convd**", "naive": "naive loop (convd-bench --impl naive)"}.get(lab, lab)
            kern = d.get("kernel_impl", d.get("isa", ""))
            vs = f"{d['median_ms'] / fast['median_ms']:.2f}x" if fast else "–"
            out.append(
                f"| {shape_s(c)} | {name} | {kern} | {d['median_ms']:.3f} | {d['min_ms']:.3f} | "
                f"{flops / d['median_ms'] * 1e-6:.1f} | {vs} |"
            )
    if errors:
        out.append("")
        out.append(
            "Not run on some shapes (oneDNN has no implementation for them: its Winograd takes only 3x3 kernels with enough channels): "
            + "; ".join(f"{e['impl']} {e.get('mode', '')} ({e['error']})" for e in errors)
        )
    out.append("")
    out.append(
        "Times are medians over a run's repeats (training: over its steps), best of the rounds; "
        "min is that round's fastest repeat. *anchor / convd* = anchor ms / convd ms, so above 1 "
        "convd is faster. *onednn-X* takes NCHW input and OIHW weights and gives NCHW output "
        "like convd: the reorders into and out of oneDNN's blocked layouts are inside the timed "
        "call; *onednn-X-blocked* is the primitive alone on data already blocked. oneDNN's "
        "*train* is its forward (training) plus backward-weights (with bias) primitives: the "
        "convolution part of a step, without the loss and the update that convd's and "
        "PyTorch's steps include. OpenCV's filter2D reads a view of the input so that it "
        "computes the valid correlation without a copy. GFLOP/s counts 2 flops per "
        "multiply-add of the definition, so Winograd paths show effective rates. *outputs "
        "agree*: every implementation's output (Y, or dK for the kernel gradient) has the same "
        "check sums as convd's within 1e-6 of the sum of |output| (training steps run each "
        "library's own data, so they are not compared)."
    )
    if acc:
        out.append("")
        out.append("## Accuracy against the double reference\n")
        out.append(
            "max = the largest |error| / (sum of |terms| of that output), the measure the unit "
            "tests bound by 1e-5 for every path; rms = ||error|| / ||reference||. *generic* is "
            "convd's plain loops, for comparison.\n"
        )
        out.append("| case | kernels | fwd max | fwd rms | dX max | dX rms | dK max | dK rms |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for d in acc:
            c = ("corr2d", tuple(d["input"]), tuple(d["kernel"]), d["padding"], "fwd")
            out.append(
                f"| {shape_s(c)} | {d['isa']} | {d['fwd_max_scaled']:.2g} | {d['fwd_rel_rms']:.2g} | "
                f"{d['dx_max_scaled']:.2g} | {d['dx_rel_rms']:.2g} | {d['dk_max_scaled']:.2g} | "
                f"{d['dk_rel_rms']:.2g} |"
            )
    print("\n".join(out))


def check_agree(c, best):
    ref = best.get(c + ("fast",))
    if ref is None or "check" not in ref or c[0] == "train" or c[4] == "fwd+bwd":
        return "–"
    r0, r1, scale = ref["check"]
    tol = 1e-6 * scale + 1e-9
    bad = []
    n = 0
    for k, d in best.items():
        if k[:5] != c or k[5] == "fast" or "check" not in d:
            continue
        n += 1
        a0, a1, _ = d["check"]
        if abs(a0 - r0) > tol or abs(a1 - r1) > tol:
            bad.append(k[5])
    if bad:
        return "✗ differ: " + ", ".join(bad)
    return f"✓ {n + 1} of {n + 1}"


if __name__ == "__main__":
    main()
