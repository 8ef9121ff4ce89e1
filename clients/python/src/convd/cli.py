"""convd-cli: the command line of the convd daemon.

Exit codes: 0 ok, 1 the server said no (an error reply, or a job that failed), 2 bad usage, 3 cannot connect.
Every failure is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from . import images, tensors
from ._version import __version__
from .client import TERMINAL, Client, Job, _encode_body, decode_result
from .errors import ConnectionFailed, ConvdError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """A bad argument: exit 2 with its text."""


# -- arguments that are tensors ----------------------------------------------------------------------------------

def read_value(text: str, what: str, path_ok: bool = False) -> Any:
    """A tensor or body argument: inline JSON, @file (.json, .npy, or an image), or (path_ok) a plain file path."""
    if text.startswith("@") or (path_ok and os.path.isfile(text)):
        path = text[1:] if text.startswith("@") else text
        if not os.path.isfile(path):
            raise UsageError(f"{what}: no such file: {path}")
        try:
            return images.load_tensor(path)
        except ImportError as e:
            raise UsageError(f"{what}: {e}") from None
        except (OSError, ValueError) as e:
            raise UsageError(f"{what}: cannot read {path}: {e}") from None
    try:
        return json.loads(text)
    except ValueError:
        if os.path.isfile(text):
            raise UsageError(f"{what}: {text!r} is not JSON; did you mean @{text} (read the file)?") from None
        if not text.lstrip().startswith(("[", "{")) and text.replace("_", "").isalnum():
            return text  # a kernel name such as sobel_x
        raise UsageError(f"{what}: not valid JSON (give JSON, @file.json, @file.npy or @image.png): {text[:60]}") \
            from None


def write_output(value: Any, path: str, normalize: bool) -> None:
    try:
        images.save_tensor(value, path, normalize=normalize)
    except ImportError as e:
        raise UsageError(str(e)) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot write {path}: {e}") from None


def print_json(obj: Any) -> None:
    print(json.dumps(tensors.to_plain(obj), separators=(",", ":")))


def parse_labels(items: Optional[List[str]]) -> Optional[Dict[str, str]]:
    if not items:
        return None
    labels = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


# -- progress ---------------------------------------------------------------------------------------------------

def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Bar:
    """One live line on a terminal (step k/n, loss, steps/s, ETA), or plain lines when stdout is not one."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.total = 0
        self.t0 = time.monotonic()
        self.first_step: Optional[int] = None
        self.last_draw = 0.0
        self.width = 0

    def event(self, ev: Dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.total = int(ev.get("steps") or 0)
        elif kind == "step":
            self.step(int(ev["step"]), ev.get("loss"))
        elif kind == "warning":
            self.clear()
            print(f"warning: {ev.get('code')}: {ev.get('detail')} (step {ev.get('step')}, loss {ev.get('loss')})",
                  file=sys.stderr)

    def step(self, step: int, loss: Any) -> None:
        now = time.monotonic()
        if self.first_step is None:
            self.first_step, self.t0 = step, now
        if not self.live:
            print(f"step {step}/{self.total}  loss {loss}", flush=True)
            return
        if now - self.last_draw < 0.1 and step != self.total:
            return  # at most 10 redraws a second, however fast the steps come
        self.last_draw = now
        done = step - self.first_step
        rate = done / (now - self.t0) if now > self.t0 and done > 0 else 0.0
        eta = fmt_duration((self.total - step) / rate) if rate > 0 else "?"
        frac = step / self.total if self.total else 0
        bar = "#" * int(frac * 20) + "-" * (20 - int(frac * 20))
        line = f"[{bar}] step {step}/{self.total}  loss {loss}  {rate:,.0f} steps/s  ETA {eta}"
        sys.stdout.write("\r" + line + " " * max(0, self.width - len(line)))
        sys.stdout.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.live and self.width:
            sys.stdout.write("\r" + " " * self.width + "\r")
            sys.stdout.flush()
            self.width = 0

    def close(self) -> None:
        if self.live and self.width:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.width = 0


def follow(client: Client, job_id: str, args: argparse.Namespace) -> int:
    """Follows a job's events to the end, with the bar (or --json lines); Ctrl-C cancels the job on the server."""
    bar = Bar(live=sys.stdout.isatty() and not args.json)
    last: Dict[str, Any] = {}
    try:
        for ev in client.stream("GET", f"/jobs/{job_id}/events"):
            if args.json:
                print(json.dumps(ev, separators=(",", ":")), flush=True)
            else:
                bar.event(ev)
            if ev.get("event") in ("done", "error"):
                last = ev
    except KeyboardInterrupt:
        bar.close()
        if getattr(args, "cancel_on_interrupt", True):
            try:
                client.cancel(job_id)
                print(f"cancelled {job_id}", file=sys.stderr)
            except ConvdError as e:
                print(f"convd-cli: could not cancel {job_id}: {e}", file=sys.stderr)
        else:
            print(f"stopped watching; {job_id} runs on", file=sys.stderr)
        return 130
    bar.close()
    if args.json:
        return EXIT_OK if last.get("status") == "succeeded" else EXIT_REFUSED
    return report_end(client, job_id, last, args)


def report_end(client: Client, job_id: str, last: Dict[str, Any], args: argparse.Namespace) -> int:
    if last.get("event") == "error":
        print(f"convd-cli: job {job_id} failed: {last.get('code')}: {last.get('detail')}", file=sys.stderr)
        return EXIT_REFUSED
    if not last:
        info = client.request("GET", f"/jobs/{job_id}")
        print(f"job {job_id} is {info.get('status')}", file=sys.stderr)
        return EXIT_OK if info.get("status") == "succeeded" else EXIT_REFUSED
    done = decode_result(last)
    print(f"{last.get('status')}  steps {last.get('steps')}  final_loss {last.get('final_loss')}")
    print("kernel " + json.dumps(tensors.to_plain(done.get("weight")), separators=(",", ":")))
    if done.get("bias") is not None:
        print("bias " + json.dumps(tensors.to_plain(done.get("bias")), separators=(",", ":")))
    out = getattr(args, "output", None)
    if out:
        write_output(done.get("weight"), out, normalize=True)
    save = getattr(args, "save_kernel", None)
    if save:
        client.save_kernel(save, from_job=job_id)
        print(f"saved kernel {save}")
    return EXIT_OK if last.get("status") == "succeeded" else EXIT_REFUSED


# -- commands ---------------------------------------------------------------------------------------------------

def geometry(args: argparse.Namespace, body: Dict[str, Any]) -> None:
    for name in ("padding", "stride", "dilation"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value if value in ("same", "valid") else read_value(value, f"--{name}")


def cmd_corr2d(client: Client, args: argparse.Namespace) -> int:
    x = read_value(args.input_opt, "-i", path_ok=True) if args.input_opt else None
    if args.input is not None:
        if x is not None:
            raise UsageError("give the input once: as an argument or with -i")
        x = read_value(args.input, "input")
    if x is None:
        raise UsageError("corr2d needs an input: convd-cli corr2d INPUT KERNEL, or -i photo.png -k sobel_x")
    kernel_text = args.kernel_opt or args.kernel
    if kernel_text is None:
        raise UsageError("corr2d needs a kernel (a tensor, @file, or a name such as sobel_x)")
    body: Dict[str, Any] = {"input": x, "kernel": read_value(kernel_text, "kernel")}
    if args.bias is not None:
        body["bias"] = read_value(args.bias, "--bias")
    geometry(args, body)
    if args.output_format:
        body["output_format"] = args.output_format
    elif args.output:
        body["output_format"] = "b64" if tensors.HAVE_NUMPY else "nested"
    reply = client.request("POST", "/corr2d", _encode_body(body))
    if args.output:
        write_output(tensors.decode(reply["output"]), args.output, normalize=args.normalize)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print_json(reply)  # as the daemon sent it (b64 stays b64)
    return EXIT_OK


def train_body(args: argparse.Namespace) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if args.body:
        loaded = read_value(args.body, "body")
        if not isinstance(loaded, dict):
            raise UsageError("the body must be a JSON object (@file.json with input, target, ...)")
        body.update(loaded)
    if args.input_opt:
        body["input"] = read_value(args.input_opt, "-i", path_ok=True)
    if args.target:
        body["target"] = read_value(args.target, "-t", path_ok=True)
    for name in ("steps", "lr", "optimizer", "loss", "seed", "report_every", "stop_loss", "momentum", "name"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.kernel_size is not None:
        body["kernel_size"] = read_value(args.kernel_size, "--kernel-size")
    if args.init is not None:
        body["init"] = read_value(args.init, "--init")
        if not isinstance(body["init"], (dict, str)):
            body["init"] = {"weight": body["init"]}
    if args.bias is not None:
        body["bias"] = args.bias
    geometry(args, body)
    labels = parse_labels(args.label)
    if labels:
        body["labels"] = labels
    if "input" not in body or "target" not in body:
        raise UsageError("train needs an input and a target: @body.json, or -i INPUT -t TARGET")
    body.pop("stream", None)
    body["kind"] = "train"
    return body


def cmd_train(client: Client, args: argparse.Namespace) -> int:
    info = client.request("POST", "/jobs", _encode_body(train_body(args)))
    return follow(client, info["id"], args)


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    info = client.request("POST", "/jobs", _encode_body(train_body(args)))
    print(info["id"])
    return EXIT_OK


def age(created: Optional[str]) -> str:
    if not created:
        return "-"
    try:
        t = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return "-"
    s = max(0, time.time() - t)
    return f"{s:.0f}s" if s < 60 else f"{s / 60:.0f}m" if s < 3600 else f"{s / 3600:.1f}h" if s < 86400 \
        else f"{s / 86400:.0f}d"


def settings(params: Dict[str, Any]) -> str:
    if not params:
        return ""
    parts = []
    ks = params.get("kernel_size")
    if ks:
        parts.append(f"{ks[0]}x{ks[1]}")
    for key in ("optimizer", "loss"):
        if params.get(key):
            parts.append(str(params[key]))
    if params.get("lr") is not None:
        parts.append(f"lr={params['lr']}")
    if params.get("seed") is not None:
        parts.append(f"seed={params['seed']}")
    return " ".join(parts)


def cmd_jobs(client: Client, args: argparse.Namespace) -> int:
    reply = client.request("GET", "/jobs", query={"status": args.status, "label": args.label, "limit": args.limit})
    if args.json:
        print_json(reply)
        return EXIT_OK
    rows = [("ID", "KIND", "STATUS", "AGE", "STEPS", "LOSS", "NAME", "SETTINGS")]
    for j in reply["jobs"]:
        p = j.get("progress") or {}
        loss = j.get("loss")
        rows.append((j["id"], j.get("kind", ""), j.get("status", ""), age(j.get("created_at")),
                     f"{p.get('step', 0)}/{p.get('steps', 0)}", "-" if loss is None else f"{loss:.6g}",
                     j.get("name") or "-", settings(j.get("params") or {})))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return EXIT_OK


def cmd_job(client: Client, args: argparse.Namespace) -> int:
    j = client.request("GET", f"/jobs/{args.id}", query={"include": "losses" if args.losses else None})
    if args.json:
        print_json(j)
        return EXIT_OK
    p = j.get("progress") or {}
    print(f"id        {j['id']}")
    print(f"kind      {j.get('kind')}")
    print(f"status    {j.get('status')}")
    if j.get("name"):
        print(f"name      {j['name']}")
    if j.get("labels"):
        print("labels    " + " ".join(f"{k}={v}" for k, v in j["labels"].items()))
    print(f"progress  {p.get('step')}/{p.get('steps')}")
    print(f"loss      {j.get('loss')}")
    if j.get("elapsed_ms") is not None:
        rate = j.get("steps_per_s")
        print(f"elapsed   {j['elapsed_ms'] / 1000:.3f} s" + (f"  ({rate:,.0f} steps/s)" if rate else ""))
    print(f"created   {j.get('created_at')}")
    if j.get("params"):
        print("settings  " + json.dumps(j["params"], separators=(",", ":")))
    if j.get("error"):
        print(f"error     {j['error'].get('code')}: {j['error'].get('detail')}")
    res = j.get("result")
    if isinstance(res, dict):
        res = decode_result(res)
        if "final_loss" in res:
            print(f"final     {res.get('final_loss')}")
        if res.get("weight") is not None:
            print("kernel    " + json.dumps(tensors.to_plain(res["weight"]), separators=(",", ":")))
        if args.losses and "losses" in res:
            print("losses    " + json.dumps(res["losses"], separators=(",", ":")))
    return EXIT_OK


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    args.cancel_on_interrupt = False  # watching someone's job: Ctrl-C stops watching, not the job
    return follow(client, args.id, args)


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    j = client.cancel(args.id)
    print(f"{j['id']} {j.get('status')}")
    return EXIT_OK


def cmd_kernels(client: Client, args: argparse.Namespace) -> int:
    if args.action == "save":
        if not args.name or (args.from_job is None) == (args.weight is None):
            raise UsageError("kernels save NAME --from-job ID | --weight TENSOR")
        weight = read_value(args.weight, "--weight", path_ok=True) if args.weight else None
        k = client.save_kernel(args.name, from_job=args.from_job, weight=weight)
        print(f"saved {k['name']} {k.get('shape')}")
    elif args.action == "delete":
        if not args.name:
            raise UsageError("kernels delete NAME")
        client.delete_kernel(args.name)
        print(f"deleted {args.name}")
    elif args.action == "get":
        if not args.name:
            raise UsageError("kernels get NAME [-o out.npy]")
        k = client.request("GET", f"/kernels/{args.name}")
        value = k.get("kernel", k.get("example"))
        if args.output:
            write_output(tensors.decode(value), args.output, normalize=True)
        else:
            print_json(value)
    else:
        for k in client.kernels():
            kind = "built-in" if k.get("builtin", True) else f"saved from {k.get('source') or 'a weight'}"
            print(f"{k['name']:<16} {kind:<36} {k.get('description', '')}".rstrip())
    return EXIT_OK


def cmd_health(client: Client, args: argparse.Namespace) -> int:
    print_json(client.health())
    return EXIT_OK


# -- the parser -------------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="convd-cli", description="Command line of convd: 2-D cross-correlation and kernel training.",
               epilog="Tensors: inline JSON, @file.json, @file.npy or @image.png. Exit codes: 0 ok, 1 the server "
                      "said no, 2 usage, 3 cannot connect.")
    p.add_argument("--url", default=os.environ.get("CONVD_URL"),
                   help="daemon URL (default $CONVD_URL or http://127.0.0.1:8080)")
    p.add_argument("--token", default=None, help="bearer token (default $CONVD_TOKEN)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply (default 30)")
    p.add_argument("--version", action="version", version=f"convd-cli {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def geometry_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--padding", help='padding: an int, "[ph,pw]", "same" or "valid"')
        sp.add_argument("--stride", help='stride: an int or "[sh,sw]"')
        sp.add_argument("--dilation", help='dilation: an int or "[dh,dw]"')

    c = sub.add_parser("corr2d", help="cross-correlate an input with a kernel",
                       description="POST /corr2d. Example: convd-cli corr2d -i photo.png -k sobel_x -o edges.png")
    c.add_argument("input", nargs="?", help="the input tensor (JSON, @file.json, @file.npy, @image.png)")
    c.add_argument("kernel", nargs="?", help="the kernel: a tensor, @file, or a name (edge, sobel_x, a saved one)")
    c.add_argument("-i", "--input", dest="input_opt", metavar="FILE", help="the input from a file (.json, .npy, image)")
    c.add_argument("-k", "--kernel", dest="kernel_opt", metavar="KERNEL", help="the kernel (as the argument)")
    c.add_argument("--bias", help="a number, or one per output channel as JSON")
    geometry_options(c)
    c.add_argument("--output-format", choices=["nested", "flat", "b64"], help="form of the printed output")
    c.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE (.npy, .png, .json)")
    c.add_argument("--normalize", action="store_true", help="images: stretch min..max to black..white")
    c.set_defaults(run=cmd_corr2d)

    def train_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("body", nargs="?", help="a /train body: @file.json (its fields; options override them)")
        sp.add_argument("-i", "--input", dest="input_opt", metavar="FILE", help="the input (file or JSON)")
        sp.add_argument("-t", "--target", metavar="FILE", help="the target (file or JSON)")
        sp.add_argument("--kernel-size", help='kernel size: an int or "[kh,kw]"')
        sp.add_argument("--steps", type=int, help="training steps")
        sp.add_argument("--lr", type=float, help="learning rate")
        sp.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], help="optimizer (default sgd)")
        sp.add_argument("--momentum", type=float, help="momentum of the momentum optimizer")
        sp.add_argument("--loss", choices=["sse", "mse"], help="loss (default sse)")
        sp.add_argument("--seed", type=int, help="seed of the random start")
        sp.add_argument("--init", help="starting weight: a tensor, @file, or a kernel name")
        sp.add_argument("--bias", dest="bias", action="store_true", default=None, help="learn a bias (default)")
        sp.add_argument("--no-bias", dest="bias", action="store_false", help="learn no bias")
        sp.add_argument("--report-every", type=int, help="stream every n-th step")
        sp.add_argument("--stop-loss", type=float, help="stop once a step's loss is at or below this")
        geometry_options(sp)
        sp.add_argument("--name", help="a name for the job")
        sp.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (repeatable)")

    t = sub.add_parser("train", help="train a kernel, with a live progress bar",
                       description="Starts a training job and follows it: one live bar on a terminal, plain lines "
                                   "otherwise, raw events with --json. Ctrl-C cancels the job on the server.")
    train_options(t)
    t.add_argument("--json", action="store_true", help="print the raw events (NDJSON)")
    t.add_argument("-o", "--output", metavar="FILE", help="write the learned kernel to FILE (.npy, .json, .png)")
    t.add_argument("--save-kernel", metavar="NAME", help="save the learned kernel under NAME on the daemon")
    t.set_defaults(run=cmd_train)

    s = sub.add_parser("submit", help="start a training in the background and print its id")
    train_options(s)
    s.set_defaults(run=cmd_submit)

    j = sub.add_parser("jobs", help="list jobs as a table")
    j.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelling", "cancelled"],
                   help="only jobs in this status")
    j.add_argument("--label", action="append", metavar="KEY=VALUE", help="only jobs with this label (repeatable)")
    j.add_argument("--limit", type=int, help="at most this many (default 100)")
    j.add_argument("--json", action="store_true", help="print the raw reply")
    j.set_defaults(run=cmd_jobs)

    one = sub.add_parser("job", help="summary of one job")
    one.add_argument("id", help="the job id")
    one.add_argument("--losses", action="store_true", help="include every step's loss")
    one.add_argument("--json", action="store_true", help="print the raw resource")
    one.set_defaults(run=cmd_job)

    w = sub.add_parser("watch", help="follow a job with the progress bar (Ctrl-C stops watching)")
    w.add_argument("id", help="the job id")
    w.add_argument("--json", action="store_true", help="print the raw events")
    w.set_defaults(run=cmd_watch)

    x = sub.add_parser("cancel", help="cancel a job")
    x.add_argument("id", help="the job id")
    x.set_defaults(run=cmd_cancel)

    k = sub.add_parser("kernels", help="list, get, save or delete named kernels")
    k.add_argument("action", nargs="?", choices=["list", "get", "save", "delete"], default="list",
                   help="what to do (default list)")
    k.add_argument("name", nargs="?", help="the kernel's name")
    k.add_argument("--from-job", metavar="ID", help="save: the learned kernel of this finished job")
    k.add_argument("--weight", metavar="TENSOR", help="save: this tensor (JSON, @file)")
    k.add_argument("-o", "--output", metavar="FILE", help="get: write to FILE (.npy, .json, .png)")
    k.set_defaults(run=cmd_kernels)

    h = sub.add_parser("health", help="check that the daemon serves")
    h.set_defaults(run=cmd_health)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "command", None):
            raise UsageError("a command is needed: corr2d, train, submit, jobs, job, watch, cancel, kernels, health "
                             "(see convd-cli --help)")
        client = Client(args.url, token=args.token, timeout=args.timeout)
        return int(args.run(client, args))
    except UsageError as e:
        print(f"convd-cli: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionFailed as e:
        print(f"convd-cli: {e.detail}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConvdError as e:
        print(f"convd-cli: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as e:  # a bad URL
        print(f"convd-cli: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("convd-cli: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:  # never a traceback: one line, and how to report it
        print(f"convd-cli: unexpected error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL) if hasattr(signal, "SIGPIPE") else None
    raise SystemExit(main())
