"""`scripts/bench --suite`: many networks, ours against PyTorch at its best, side by side.

For each network of SUITE, in one run: ours at 1 rank × 1 thread, 1 rank × 2 threads and
2 ranks × 1 thread (exact reduction); PyTorch eager at 1 and 2 threads in NCHW and in
channels_last (the faster counts), and DDP (gloo) over 2 ranks × 1 thread in the layout that
was faster at 1 thread. Same workload as scripts/bench (global batch 64, SGD lr 0.05 constant,
momentum 0.9, uint8 images scaled ÷ 255 every step). 1×28×28 networks train on Fashion-MNIST;
3×32×32 ones on random CIFAR-10-format batches written to a scratch directory (the same bytes
for both sides). The ratios, their geometric means and the targets of issue 16 are printed as
Markdown.
"""

import math
import os
import shlex
import statistics
import subprocess
import sys
import json
import re
import time

import bench

CIFAR_RECORDS_PER_BATCH = 2000  # × 5 training batches; the test batch has 1000

# (name, spec, input "fashion" or "cifar", timed steps per run, what it covers)
SUITE = [
    ("seed-cnn", "seed-cnn", "fashion", 300, "the default: 3×3 convolutions, ReLU, max pooling"),
    ("seed-cnn-bn", "seed-cnn-bn", "fashion", 300, "batch norm"),
    ("letters-cnn", "letters-cnn", "fashion", 100, "padding, GELU, 128 channels, log-softmax"),
    ("mlp", "mlp", "fashion", 600, "fully connected, tanh"),
    ("cifar-cnn", "cifar-cnn", "cifar", 300, "3×32×32 input, padding"),
    ("lenet-5x5", "conv24k5-relu-maxpool2-conv48k5-relu-maxpool2-fc256-relu-fc", "fashion", 300, "5×5 kernels"),
    ("stride2-bn-avg", "conv32k3s2p1-bn-relu-conv64k3s2p1-bn-relu-avgpool2-fc", "fashion", 300,
     "stride-2 convolutions, BN, average pooling"),
    ("k7-stem", "conv32k7s2p3-bn-relu-maxpool2-conv64k3p1-bn-relu-avgpool2-fc", "cifar", 300,
     "a 7×7 stride-2 stem, 3×32×32"),
    ("odd-tanh-gelu", "conv20k3p1-tanh-maxpool2-conv50k3-gelu-maxpool2-fc100-gelu-fc", "fashion", 200,
     "odd channel counts, tanh, GELU"),
    ("pointwise", "conv32k3p1-relu-conv16k1-relu-maxpool2-conv64k3p1-relu-maxpool2-fc", "fashion", 200,
     "1×1 convolutions"),
    ("wide-fc", "fc1024-relu-fc1024-relu-fc", "fashion", 300, "wide fully connected layers"),
    ("wide-bn-cifar", "conv64k3p1-bn-relu-conv64k3p1-bn-relu-maxpool2-conv128k3p1-bn-relu-maxpool2-fc",
     "cifar", 40, "64/64/128 channels with BN on 3×32×32"),
]

MODEL_SPEC_SWIFT = os.path.join(bench.REPO, "Sources", "Engine", "Model", "ModelSpec.swift")


# ---------------------------------------------------------------------------- data

def write_cifar(directory):
    """Random CIFAR-10 binary batches (label byte + 3072 pixel bytes per record)."""
    import numpy
    rng = numpy.random.default_rng(1)
    os.makedirs(directory, exist_ok=True)
    for name, records in [(f"data_batch_{i}.bin", CIFAR_RECORDS_PER_BATCH) for i in range(1, 6)] + [("test_batch.bin", 1000)]:
        data = rng.integers(0, 256, size=(records, 3073), dtype=numpy.uint8)
        data[:, 0] %= 10
        data.tofile(os.path.join(directory, name))
    return directory


def load_training_set(data):
    """(uint8 images N×C×H×W, int64 labels) of the data directory, for the PyTorch side."""
    import numpy
    import torch
    if os.path.exists(os.path.join(data, "data_batch_1.bin")):
        records = numpy.concatenate([numpy.fromfile(os.path.join(data, f"data_batch_{i}.bin"), dtype=numpy.uint8).reshape(-1, 3073)
                                     for i in range(1, 6)])
        return torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(records[:, 0].astype(numpy.int64))
    images = bench.load_idx(os.path.join(data, "train-images-idx3-ubyte.gz")).unsqueeze(1)
    labels = bench.load_idx(os.path.join(data, "train-labels-idx1-ubyte.gz")).long()
    return images, labels


# ---------------------------------------------------------------------------- PyTorch model from our spec

def torch_model_from_spec(spec, input_shape, classes=10):
    """The nn.Sequential our spec grammar describes (ModelSpec's tokens; a Flatten before the
    first fc after an image; `fc` alone maps to the class count) and whether it ends in log-softmax."""
    import torch.nn as nn
    layers, shape = [], list(input_shape)
    log_softmax = False

    def fields(text, letters):
        match = re.fullmatch(r"(\d+)" + "".join(f"(?:{l}(\\d+))?" for l in letters), text)
        if not match:
            sys.exit(f"bench: cannot translate '{text}' of '{spec}'")
        return [None if g is None else int(g) for g in match.groups()]

    for token in spec.split("-"):
        if token == "relu":
            layers.append(nn.ReLU())
        elif token == "gelu":
            layers.append(nn.GELU())
        elif token == "tanh":
            layers.append(nn.Tanh())
        elif token == "bn":
            layers.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif token == "flatten":
            layers.append(nn.Flatten())
            shape = [math.prod(shape)]
        elif token == "logsoftmax":
            layers.append(nn.LogSoftmax(dim=1))
            log_softmax = True
        elif token.startswith("conv"):
            out, k, s, p = fields(token[4:], "ksp")
            s, p = s or 1, p or 0
            layers.append(nn.Conv2d(shape[0], out, k, stride=s, padding=p))
            shape = [out, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
        elif token.startswith("maxpool") or token.startswith("avgpool"):
            k, s = fields(token[7:], "s")
            s = s or k
            layers.append((nn.MaxPool2d if token.startswith("max") else nn.AvgPool2d)(k, stride=s))
            shape = [shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1]
        elif token.startswith("fc"):
            if len(shape) != 1:
                layers.append(nn.Flatten())
                shape = [math.prod(shape)]
            out = fields(token[2:], "")[0] if token != "fc" else classes
            layers.append(nn.Linear(shape[0], out))
            shape = [out]
        else:
            sys.exit(f"bench: cannot translate token '{token}' of '{spec}'")
    return nn.Sequential(*layers), log_softmax


def preset_spec(name):
    """A preset's spec text, read from ModelSpec.presets (the one list of them), or `name` itself."""
    with open(MODEL_SPEC_SWIFT) as f:
        presets = dict(re.findall(r'\("([a-z0-9-]+)", "([a-z0-9.()-]+)"', f.read()))
    return presets.get(name, name)


# ---------------------------------------------------------------------------- PyTorch worker

def torch_train(rank, ranks, configs, spec, data, steps, port, queue):
    """Runs each (threads, layout) of `configs` for `steps` timed steps after warm-up; rank 0
    puts a list of images/s and the peak RSS (MB, max over ranks)."""
    import resource
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    if ranks > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", rank=rank, world_size=ranks)
    images, labels = load_training_set(data)
    local = bench.GLOBAL_BATCH // ranks
    batches = images.shape[0] // bench.GLOBAL_BATCH
    results = []
    for threads, layout in configs:
        torch.set_num_threads(threads)
        torch.manual_seed(1)
        model, log_softmax = torch_model_from_spec(spec, list(images.shape[1:]))
        memory = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = model.to(memory_format=memory)
        if ranks > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=bench.LR, momentum=bench.MOMENTUM)
        loss_function = F.nll_loss if log_softmax else F.cross_entropy

        def step(i):
            start = (i % batches) * bench.GLOBAL_BATCH + rank * local
            x = images[start:start + local].float().div_(255).contiguous(memory_format=memory)
            loss = loss_function(model(x), labels[start:start + local])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for i in range(bench.WARMUP_STEPS):
            step(i)
        if ranks > 1:
            dist.barrier()
        begin = time.perf_counter()
        for i in range(bench.WARMUP_STEPS, bench.WARMUP_STEPS + steps):
            step(i)
        if ranks > 1:
            dist.barrier()
        results.append(bench.GLOBAL_BATCH * steps / (time.perf_counter() - begin))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if ranks > 1:
        peak = torch.tensor([rss_mb], dtype=torch.float64)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        rss_mb = peak.item()
        dist.destroy_process_group()
    if rank == 0:
        queue.put((results, rss_mb, torch.__version__))


def torch_worker(argv):
    """`bench_suite.py torch-worker RANKS SPEC DATA STEPS THREADS:LAYOUT ...`"""
    ranks, spec, data, steps = int(argv[0]), argv[1], argv[2], int(argv[3])
    configs = [(int(c.split(":")[0]), c.split(":")[1]) for c in argv[4:]]
    results, rss_mb, version = bench.run_ranks(torch_train, ranks, configs, spec, data, steps)
    print(json.dumps({"images_per_second": results, "max_rss_mb": rss_mb, "torch": version}), flush=True)


def run_torch(ranks, spec, data, steps, configs):
    command = [sys.executable, os.path.abspath(__file__), "torch-worker", str(ranks), spec, data, str(steps)] + \
              [f"{t}:{layout}" for t, layout in configs]
    threads = max(t for t, _ in configs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if result.returncode != 0:
        bench.fail(f"`{shlex.join(command)}` exited with {result.returncode}", result.stderr + result.stdout)
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    bench.TORCH_VERSION[0] = record["torch"]
    return record["images_per_second"], record["max_rss_mb"]


# ---------------------------------------------------------------------------- the suite

def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def measure(network, data, repeats, scratch):
    """{'ours1', 'ours2', 'ours2r', 'torch1', 'torch2', 'ddp', 'layout1', 'layout2', 'rss_ours', 'rss_torch'}."""
    name, spec, _, steps, _ = network
    spec = preset_spec(spec)
    has_conv = "conv" in spec
    layouts = ["nchw", "channels_last"] if has_conv else ["nchw"]
    runs = {key: [] for key in ["ours1", "ours2", "ours2r"]}
    torch_runs = {(t, l): [] for t in (1, 2) for l in layouts}
    ddp_runs, rss_ours, rss_torch = [], [], []
    for repeat in range(repeats):
        for key, config in [("ours1", dict(ranks=1, threads=1)), ("ours2", dict(ranks=1, threads=2)),
                            ("ours2r", dict(ranks=2, threads=1))]:
            config = dict(config, extra=["--model", spec, "--data", data])
            images_per_second, rss = bench.run_ours(config, steps, scratch)
            runs[key].append(images_per_second)
            rss_ours.append(rss)
        configs = list(torch_runs)
        figures, rss = run_torch(1, spec, data, steps, configs)
        for config, figure in zip(configs, figures):
            torch_runs[config].append(figure)
        rss_torch.append(rss)
        best1 = max(layouts, key=lambda l: statistics.median(torch_runs[(1, l)]))
        figures, rss = run_torch(2, spec, data, steps, [(1, best1)])
        ddp_runs.append(figures[0])
        rss_torch.append(rss)
        bench.log(f"  [{repeat + 1}/{repeats}] {name}: ours {runs['ours1'][-1]:.0f} / {runs['ours2'][-1]:.0f} / "
                  f"{runs['ours2r'][-1]:.0f} images/s; PyTorch "
                  + ", ".join(f"{t}t {l} {v[-1]:.0f}" for (t, l), v in torch_runs.items())
                  + f", DDP {ddp_runs[-1]:.0f}")
    result = {key: statistics.median(values) for key, values in runs.items()}
    for threads in (1, 2):
        best = max(layouts, key=lambda l: statistics.median(torch_runs[(threads, l)]))
        result[f"torch{threads}"] = statistics.median(torch_runs[(threads, best)])
        result[f"layout{threads}"] = "CL" if best == "channels_last" else "NCHW"
    result["ddp"] = statistics.median(ddp_runs)
    result["rss_ours"], result["rss_torch"] = max(rss_ours), max(rss_torch)
    return result


def report(results, command, when, steps_note):
    fmt = bench.fmt
    out = ["| network | covers | 1 thread: ours / PyTorch | ratio | 2 threads: ours / PyTorch | ratio | "
           "2 ranks: ours exact / DDP | ratio | ours 2 threads ÷ 1 | peak RSS MB ours / PyTorch |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    ratios = {"1": [], "2": [], "r": []}
    checks = []
    for (name, _, _, _, covers), r in results:
        r1, r2, rr = r["ours1"] / r["torch1"], r["ours2"] / r["torch2"], r["ours2r"] / r["ddp"]
        ratios["1"].append(r1)
        ratios["2"].append(r2)
        ratios["r"].append(rr)
        scaling = r["ours2"] / r["ours1"]
        out.append(f"| {name} | {covers} | {fmt(r['ours1'])} / {fmt(r['torch1'])} ({r['layout1']}) | {fmt(r1, 2)} "
                   f"| {fmt(r['ours2'])} / {fmt(r['torch2'])} ({r['layout2']}) | {fmt(r2, 2)} "
                   f"| {fmt(r['ours2r'])} / {fmt(r['ddp'])} | {fmt(rr, 2)} | {fmt(scaling, 2)} "
                   f"| {fmt(r['rss_ours'])} / {fmt(r['rss_torch'])} |")
        checks.append((name, r1, r2, rr, scaling, r["rss_ours"] / r["rss_torch"]))
    g1, g2, gr = geomean(ratios["1"]), geomean(ratios["2"]), geomean(ratios["r"])
    out.append(f"| **geometric mean** | | | **{fmt(g1, 2)}** | | **{fmt(g2, 2)}** | | **{fmt(gr, 2)}** | | |")

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    seed = next((c for c in checks if c[0] == "seed-cnn"), None)
    rows = [
        ("every network ≥ 1.5× PyTorch at 1 thread", min(c[1] for c in checks), 1.5),
        ("every network ≥ 1.5× PyTorch at 2 threads", min(c[2] for c in checks), 1.5),
        ("geometric mean ≥ 2.0× (1 thread)", g1, 2.0),
        ("geometric mean ≥ 2.0× (2 threads)", g2, 2.0),
        ("every network, 2 ranks exact ≥ 2.5× DDP", min(c[3] for c in checks), 2.5),
        ("every network, 2 threads ≥ 1.8× 1 thread", min(c[4] for c in checks), 1.8),
    ]
    if seed:
        rows += [("seed-cnn ≥ 2.0× at 1 thread", seed[1], 2.0), ("seed-cnn ≥ 2.5× at 2 threads", seed[2], 2.5)]
    out += ["", "| target | measured (worst network) | result |", "|---|--:|---|"]
    for label, value, threshold in rows:
        out.append(f"| {label} | {fmt(value, 2)}× | {verdict(value >= threshold)} |")
    worst_rss = max(c[5] for c in checks)
    out.append(f"| peak RSS ≤ ¼ of PyTorch's on every network | {fmt(worst_rss, 2)} of PyTorch's | {verdict(worst_rss <= 0.25)} |")
    out += ["", f"Machine: {bench.machine()}. Date: {when}. {bench.versions()}.",
            f"Command: `{command}` ({steps_note}; PyTorch's layout — NCHW or channels_last (CL) — is the faster one "
            "measured in the same run).", ""]
    return "\n".join(out)


def main(args, command, when, scratch):
    cifar = write_cifar(os.path.join(scratch, "cifar"))
    networks = [n for n in SUITE if not args.networks or n[0] in args.networks]
    if not networks:
        bench.fail(f"no network named {', '.join(args.networks)}; the suite has {', '.join(n[0] for n in SUITE)}")
    results = []
    for network in networks:
        if args.quick:
            network = network[:3] + (max(20, network[3] // 10),) + network[4:]
        data = bench.DATA if network[2] == "fashion" else cifar
        results.append((network, measure(network, data, args.repeats, scratch)))
    note = f"median of {args.repeats} run(s) per configuration; timed steps per network: " + \
           ", ".join(f"{n[0]} {n[3]}" for n, _ in results)
    return report(results, command, when, note)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "torch-worker":
        torch_worker(sys.argv[2:])
