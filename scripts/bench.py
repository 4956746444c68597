#!/usr/bin/env python3
"""Throughput (images/s) and peak memory of swift-cnn-train against PyTorch (CPU).

Run through scripts/bench, which builds the binary, provides a venv with torch and sets
the Open MPI environment. The workload on both sides: seed-cnn on Fashion-MNIST, global
batch 64, fp32, SGD lr 0.05 (constant) momentum 0.9. Runs alternate (ours, torch, ours,
torch, ...) so that drifts in machine speed hit both sides alike; each configuration
reports the median images/s over --repeats runs and the largest peak RSS.

`bench.py torch-worker ...` is the PyTorch side of one run (used internally).
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO, ".build", "release", "swift-cnn-train")
DATA = "/usr/share/datasets/fashion-mnist"
GLOBAL_BATCH = 64
LR = 0.05
MOMENTUM = 0.9
WARMUP_STEPS = 20
GNU_TIME = "/usr/bin/time"

# Targets: (label, kind, threshold).
RATIO_TARGETS = [
    ("1 rank × 1 thread vs PyTorch 1 thread", "1x1", 2.0),
    ("1 rank × 2 threads vs PyTorch 2 threads", "1x2", 2.0),
    ("2 ranks exact vs PyTorch DDP 2 ranks", "2exact", 2.5),
]
RSS_TARGET_MB = 200.0

# (key, description, ours command arguments and rank count, torch counterpart key)
OURS = [
    ("1x1", "1 rank × 1 thread", dict(ranks=1, threads=1, extra=[]), "t1"),
    ("1x2", "1 rank × 2 threads", dict(ranks=1, threads=2, extra=[]), "t2"),
    ("2exact", "2 ranks × 1 thread, exact reduction", dict(ranks=2, threads=1, extra=[]), "ddp"),
    ("2float", "2 ranks × 1 thread, float reduction", dict(ranks=2, threads=1, extra=["--reduction", "float"]), "ddp"),
]
TORCH = {
    "t1": ("PyTorch 1 thread", dict(ranks=1, threads=1)),
    "t2": ("PyTorch 2 threads", dict(ranks=1, threads=2)),
    "ddp": ("PyTorch DDP (gloo) 2 ranks × 1 thread", dict(ranks=2, threads=1)),
}


def log(message):
    print(message, file=sys.stderr, flush=True)


def fail(message, output=""):
    tail = "\n".join(output.strip().splitlines()[-15:])
    sys.exit(f"bench: {message}" + (f"\n{tail}" if tail else ""))


# ---------------------------------------------------------------------------- ours

def read_rss_kb(path):
    """The %M figure GNU time wrote (it may precede it with 'Command exited with …')."""
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    return int(lines[-1])


def run_ours(config, steps, scratch):
    ranks, threads = config["ranks"], config["threads"]
    train = [BINARY, "train", "--max-steps", str(WARMUP_STEPS + steps), "--threads", str(threads),
             "--batch-size", str(GLOBAL_BATCH), "--lr", str(LR), "--lr-schedule", "constant",
             "--momentum", str(MOMENTUM), "--data", DATA] + config["extra"]
    # Throughput between the end of warm-up step WARMUP_STEPS and the last step, from the
    # metrics file's elapsed seconds (as PyTorch's side measures it).
    metrics = os.path.join(scratch, "ours-metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    train += ["--metrics", metrics, "--log-every", str(WARMUP_STEPS)]
    rss = os.path.join(scratch, "ours-rss")
    for name in os.listdir(scratch):
        if name.startswith("ours-rss"):
            os.remove(os.path.join(scratch, name))
    if ranks == 1:
        command = [GNU_TIME, "-f", "%M", "-o", rss] + train
    else:
        # Every rank under GNU time, each writing its own file: the max over ranks.
        wrapper = f'exec {GNU_TIME} -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"'
        command = ["mpirun", "-n", str(ranks), "bash", "-c", wrapper, rss] + train
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        fail(f"`{shlex.join(command)}` exited with {result.returncode}", result.stdout)
    with open(metrics) as f:
        elapsed = {r["step"]: r["elapsed_seconds"] for r in map(json.loads, f) if r.get("kind") == "step"}
    last = max(elapsed, default=0)
    if WARMUP_STEPS not in elapsed or last <= WARMUP_STEPS:
        fail(f"no step lines for steps {WARMUP_STEPS} and later in the metrics of `{shlex.join(command)}`", result.stdout)
    images_per_second = GLOBAL_BATCH * (last - WARMUP_STEPS) / (elapsed[last] - elapsed[WARMUP_STEPS])
    files = [os.path.join(scratch, n) for n in os.listdir(scratch) if n.startswith("ours-rss")]
    if len(files) != ranks:
        fail(f"expected {ranks} peak-memory file(s) from GNU time, found {len(files)}")
    return images_per_second, max(read_rss_kb(f) for f in files) / 1024


# ---------------------------------------------------------------------------- PyTorch

TORCH_VERSION = [None]  # as the runs report it


def run_torch(config, steps):
    command = [sys.executable, os.path.abspath(__file__), "torch-worker",
               "--ranks", str(config["ranks"]), "--threads", str(config["threads"]), "--steps", str(steps)]
    env = dict(os.environ, OMP_NUM_THREADS=str(config["threads"]), MKL_NUM_THREADS=str(config["threads"]))
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if result.returncode != 0:
        fail(f"`{shlex.join(command)}` exited with {result.returncode}", result.stderr + result.stdout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"no result from `{shlex.join(command)}`", result.stderr + result.stdout)
    record = json.loads(lines[-1])
    TORCH_VERSION[0] = record["torch"]
    return record["images_per_second"], record["max_rss_mb"]


def load_idx(path):
    """An IDX file of unsigned bytes (magic 0x00 0x00 0x08 ndim, then ndim big-endian sizes),
    as a uint8 tensor over the decompressed bytes (no second copy)."""
    import warnings
    import torch
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:3] != b"\x00\x00\x08":
        fail(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the buffer is read-only; it is never written
        return torch.frombuffer(raw, dtype=torch.uint8, offset=4 + 4 * ndim).view(dims)


def torch_model():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))


def torch_train(rank, ranks, threads, steps, port, queue):
    """One process (rank) of a PyTorch run; rank 0 puts (images/s, max RSS MB over ranks)."""
    import resource
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    if ranks > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # scripts/bench_scaling.py: another host
        os.environ["MASTER_PORT"] = str(port)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", rank=rank, world_size=ranks)

    # The whole training set as uint8, once; each step slices a batch and scales it, as ours does.
    images = load_idx(os.path.join(DATA, "train-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz")).long()
    local = GLOBAL_BATCH // ranks
    batches = images.shape[0] // GLOBAL_BATCH

    model = torch_model()
    if ranks > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step(i):
        start = (i % batches) * GLOBAL_BATCH + rank * local
        x = images[start:start + local].unsqueeze(1).float().div_(255)
        y = labels[start:start + local]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for i in range(WARMUP_STEPS):
        step(i)
    if ranks > 1:
        dist.barrier()
    begin = time.perf_counter()
    for i in range(WARMUP_STEPS, WARMUP_STEPS + steps):
        step(i)
    if ranks > 1:
        dist.barrier()
    seconds = time.perf_counter() - begin

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if ranks > 1:
        peak = torch.tensor([rss_mb], dtype=torch.float64)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        rss_mb = peak.item()
        dist.destroy_process_group()
    if rank == 0:
        queue.put((GLOBAL_BATCH * steps / seconds, rss_mb, torch.__version__))


def run_ranks(train, ranks, *arguments):
    """Runs `train(rank, ranks, *arguments, port, queue)` in this process (one rank) or in
    `ranks` spawned processes, and returns what rank 0 put on the queue. Ranks are spawned
    with the standard library (what torch.multiprocessing.spawn wraps), so the parent does not
    import torch: faster, and no idle copy of it in memory."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    if ranks == 1:
        train(0, 1, *arguments, 0, queue)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        processes = [context.Process(target=train, args=(rank, ranks, *arguments, port, queue)) for rank in range(ranks)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        if any(p.exitcode != 0 for p in processes):
            sys.exit(f"torch-worker: rank exit codes {[p.exitcode for p in processes]}")
    return queue.get()


def torch_worker(argv):
    parser = argparse.ArgumentParser(prog="bench.py torch-worker")
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args(argv)
    images_per_second, rss_mb, version = run_ranks(torch_train, args.ranks, args.threads, args.steps)
    print(json.dumps({"images_per_second": images_per_second, "max_rss_mb": rss_mb, "torch": version}), flush=True)


# ---------------------------------------------------------------------------- report

def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores ({platform.system()} {platform.release()})"


def versions():
    parts = []
    if os.access(BINARY, os.X_OK):
        swift = subprocess.run([BINARY, "train", "--version"], capture_output=True, text=True).stdout.strip()
        parts.append(f"swift-cnn-train {swift or '?'}")
    if TORCH_VERSION[0]:
        parts.append(f"PyTorch {TORCH_VERSION[0]}")
    return ", ".join(parts)


def fmt(value, digits=0):
    return "—" if value is None else f"{value:,.{digits}f}"


def report(args, ours, torch_results, command, when):
    """The Markdown report: the results table, the targets and the exact-reduction cost."""
    def med(runs):
        return statistics.median(r[0] for r in runs) if runs else None

    def peak(runs):
        return max(r[1] for r in runs) if runs else None

    out = ["| configuration | ours images/s | PyTorch images/s | ratio | ours peak RSS MB | PyTorch peak RSS MB |",
           "|---|--:|--:|--:|--:|--:|"]
    ratios = {}
    for key, description, _, torch_key in OURS:
        o, t = med(ours.get(key)), med(torch_results.get(torch_key))
        ratios[key] = o / t if o and t else None
        out.append(f"| {description} vs {TORCH[torch_key][0]} | {fmt(o)} | {fmt(t)} | {fmt(ratios[key], 2)} "
                   f"| {fmt(peak(ours.get(key)))} | {fmt(peak(torch_results.get(torch_key)))} |")
    out += ["", "| target | measured | result |", "|---|--:|---|"]

    def verdict(ok):
        return "—" if ok is None else ("PASS" if ok else "FAIL")

    for label, key, threshold in RATIO_TARGETS:
        r = ratios.get(key)
        out.append(f"| {label} ≥ {threshold:.1f}× | {fmt(r, 2)}{'' if r is None else '×'} | {verdict(None if r is None else r >= threshold)} |")
    peaks = [peak(runs) for runs in ours.values() if runs]
    worst = max(peaks) if peaks else None
    out.append(f"| ours peak RSS ≤ {RSS_TARGET_MB:.0f} MB (largest over all our runs and ranks) | {fmt(worst)}{'' if worst is None else ' MB'} "
               f"| {verdict(None if worst is None else worst <= RSS_TARGET_MB)} |")
    exact, float_ = med(ours.get("2exact")), med(ours.get("2float"))
    cost = 1 - exact / float_ if exact and float_ else None
    out += ["", f"Exact reduction cost (1 − exact ÷ float images/s, 2 ranks): "
                f"{'—' if cost is None else f'{100 * cost:.1f} %'}",
            "", f"Machine: {machine()}. Date: {when}. {versions()}.",
            f"Command: `{command}` ({args.steps} timed steps, {args.repeats} repeat(s); "
            f"median images/s, largest peak RSS).", ""]
    return "\n".join(out)


SEED_BEGIN, SEED_END = "<!-- scripts/bench: begin -->", "<!-- scripts/bench: end -->"
SUITE_BEGIN, SUITE_END = "<!-- scripts/bench --suite: begin -->", "<!-- scripts/bench --suite: end -->"


def write_section(begin, end, text):
    """Replaces the text between the markers `begin` and `end` of docs/performance.md."""
    path = os.path.join(REPO, "docs", "performance.md")
    with open(path) as f:
        doc = f.read()
    if begin not in doc or end not in doc:
        fail(f"{path} lacks the markers {begin} … {end}")
    doc = doc[:doc.index(begin) + len(begin)] + "\n" + text + doc[doc.index(end):]
    with open(path, "w") as f:
        f.write(doc)
    log(f"bench: wrote {os.path.relpath(path, REPO)}")


def suite(args):
    import bench_suite
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.steps or args.only:
        sys.exit("bench: --suite sets its own steps per network and runs both sides (use --quick, --repeats, --network)")
    if not os.access(BINARY, os.X_OK) or not os.access(GNU_TIME, os.X_OK):
        fail(f"{BINARY} or {GNU_TIME} is missing; run scripts/bench without --no-setup")
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["scripts/bench.py"] + sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"bench: {machine()}; suite of {len(bench_suite.SUITE)} networks, {args.repeats} repeat(s)")
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        text = bench_suite.main(args, command, when, scratch)
    print(text)
    if args.write_doc:
        write_section(SUITE_BEGIN, SUITE_END, text)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "torch-worker":
        return torch_worker(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per run (default 400)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per configuration (default 3)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 60 steps, 1 repeat")
    parser.add_argument("--only", choices=["ours", "torch"], help="run only one side")
    parser.add_argument("--write-doc", action="store_true", help="also rewrite docs/performance.md")
    parser.add_argument("--suite", action="store_true",
                        help="the network suite (scripts/bench_suite.py) instead of seed-cnn's configurations")
    parser.add_argument("--network", dest="networks", action="append", default=[],
                        help="with --suite: only this network of the suite (repeatable)")
    args = parser.parse_args()
    if args.suite:
        return suite(args)
    args.steps = args.steps or (60 if args.quick else 400)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be positive")
    if args.only != "torch" and not os.access(BINARY, os.X_OK):
        fail(f"{BINARY} is missing; run scripts/setup (or scripts/bench without --no-setup)")
    if args.only != "torch" and not os.access(GNU_TIME, os.X_OK):
        fail(f"{GNU_TIME} is missing (Debian package `time`)")

    command = os.environ.get("BENCH_COMMAND") or shlex.join(["scripts/bench.py"] + sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"bench: {machine()}; {args.steps} steps, {args.repeats} repeat(s)")
    ours, torch_results = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for repeat in range(1, args.repeats + 1):
            done_torch = set()
            for key, description, config, torch_key in OURS:
                if args.only != "torch":
                    begin = time.monotonic()
                    result = run_ours(config, args.steps, scratch)
                    ours.setdefault(key, []).append(result)
                    log(f"  [{repeat}/{args.repeats}] ours {description}: {result[0]:.0f} images/s, "
                        f"{result[1]:.0f} MB ({time.monotonic() - begin:.0f} s)")
                if args.only != "ours" and torch_key not in done_torch:
                    done_torch.add(torch_key)
                    begin = time.monotonic()
                    result = run_torch(TORCH[torch_key][1], args.steps)
                    torch_results.setdefault(torch_key, []).append(result)
                    log(f"  [{repeat}/{args.repeats}] {TORCH[torch_key][0]}: {result[0]:.0f} images/s, "
                        f"{result[1]:.0f} MB ({time.monotonic() - begin:.0f} s)")

    text = report(args, ours, torch_results, command, when)
    print(text)
    if args.write_doc:
        write_section(SEED_BEGIN, SEED_END, text)


if __name__ == "__main__":
    main()
