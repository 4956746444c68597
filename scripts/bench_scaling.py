"""Scaling of seed-cnn (batch 64, 1 thread per rank) across namespace hosts over shaped links:
ours exact, ours float and PyTorch DDP (gloo) on the same hosts, side by side. Run it through
scripts/bench-scaling, which sets up the environment; see there for the options."""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the constants and PyTorch's side of scripts/bench)

REPO = bench.REPO
HOSTS = os.path.join(REPO, "scripts", "local-hosts")
# A private set of hosts, so a running test's hosts are left alone.
HOST_ENV = dict(os.environ, LOCAL_HOSTS_PREFIX="scb", LOCAL_HOSTS_NET="10.217.0",
                LOCAL_HOSTS_DIR=os.path.join(tempfile.gettempdir(), "swift-cnn-train-bench-hosts"))
NET = HOST_ENV["LOCAL_HOSTS_NET"]
LINKS = {"unshaped veth": None, "10 Gbit/s": "10gbit", "1 Gbit/s": "1gbit"}
# tbf's bucket: about 1 ms at the rate, so bursts pass at the rate but not above it.
BURST = {"10gbit": "1250kb", "1gbit": "125kb"}
TORCH_PORT = 29517


def hosts(*args, check=True):
    result = subprocess.run([HOSTS, *args], env=HOST_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        bench.fail(f"`scripts/local-hosts {shlex.join(args)}` exited with {result.returncode}", result.stdout)
    return result.stdout


def shape(n, rate):
    """Each host's link at `rate` both ways: its lan0 (what it sends) and its switch port (what
    it receives), so a host's traffic is limited as by its own NIC."""
    for k in range(1, n + 1):
        for ns, dev in ((f"scb-h{k}", "lan0"), ("scb-sw", f"port{k}")):
            base = ["ip", "netns", "exec", ns, "tc", "qdisc"]
            subprocess.run(base + ["del", "dev", dev, "root"], stderr=subprocess.DEVNULL)
            if rate:
                subprocess.run(base + ["add", "dev", dev, "root", "tbf", "rate", rate, "burst", BURST[rate],
                                       "latency", "50ms"], check=True)


def sent_bytes():
    """Bytes h1 has sent on its link so far."""
    out = subprocess.run(["ip", "netns", "exec", "scb-h1", "cat", "/sys/class/net/lan0/statistics/tx_bytes"],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return int(out)


def train_args(steps, extra):
    return [bench.BINARY, "train", "--max-steps", str(bench.WARMUP_STEPS + steps), "--threads", "1",
            "--batch-size", str(bench.GLOBAL_BATCH), "--lr", str(bench.LR), "--lr-schedule", "constant",
            "--momentum", str(bench.MOMENTUM), "--data", bench.DATA] + extra


def run_ours(n, steps, extra, scratch):
    """(images/s between warm-up and the last step, h1's bytes sent per step, digest)."""
    metrics = os.path.join(scratch, "metrics.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    command = ["mpirun", "-n", str(n)] + train_args(steps, extra) + [
        "--metrics", metrics, "--log-every", str(bench.WARMUP_STEPS)]
    before = sent_bytes()
    out = hosts(*command)
    per_step = (sent_bytes() - before) / (bench.WARMUP_STEPS + steps)
    with open(metrics) as f:
        elapsed = {r["step"]: r["elapsed_seconds"] for r in map(json.loads, f) if r.get("kind") == "step"}
    last = max(elapsed)
    images_per_second = bench.GLOBAL_BATCH * (last - bench.WARMUP_STEPS) / (elapsed[last] - elapsed[bench.WARMUP_STEPS])
    return images_per_second, per_step, digest_of(out)


def digest_of(output):
    lines = [l for l in output.splitlines() if l.startswith("parameter digest: ")]
    return lines[-1].split(": ", 1)[1] if lines else None


def run_torch(n, steps):
    command = ["mpirun", "-n", str(n), "-x", f"MASTER_ADDR={NET}.1", "-x", f"MASTER_PORT={TORCH_PORT}",
               "-x", "GLOO_SOCKET_IFNAME=lan0", "-x", "OMP_NUM_THREADS=1",
               sys.executable, os.path.abspath(__file__), "torch-rank", "--steps", str(steps)]
    before = sent_bytes()
    out = hosts(*command)
    per_step = (sent_bytes() - before) / (bench.WARMUP_STEPS + steps)
    record = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    return record["images_per_second"], per_step, None


def torch_rank(argv):
    """One PyTorch DDP rank started by mpirun on a namespace host; rank 0 prints the result."""
    parser = argparse.ArgumentParser(prog="bench_scaling.py torch-rank")
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args(argv)

    class Printer:
        def put(self, record):
            images_per_second, _, version = record
            print(json.dumps({"images_per_second": images_per_second, "torch": version}), flush=True)

    bench.torch_train(int(os.environ["OMPI_COMM_WORLD_RANK"]), int(os.environ["OMPI_COMM_WORLD_SIZE"]),
                      1, args.steps, TORCH_PORT, Printer())


MODES = [("ours exact", lambda n, s, d: run_ours(n, s, [], d)),
         ("ours float", lambda n, s, d: run_ours(n, s, ["--reduction", "float"], d)),
         ("PyTorch DDP (gloo)", lambda n, s, d: run_torch(n, s))]


def main():
    parser = argparse.ArgumentParser(prog="scripts/bench-scaling")
    parser.add_argument("--hosts", default="2,4", help="host counts (default 2,4)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (default 3)")
    args = parser.parse_args()
    counts = [int(c) for c in args.hosts.split(",")]
    if any(c < 2 or c > 16 for c in counts) or args.steps < 1 or args.repeats < 1:
        sys.exit("bench-scaling: --hosts are 2 to 16, --steps and --repeats at least 1")

    rows = []
    serial_digest = None
    with tempfile.TemporaryDirectory() as scratch:
        for n in counts:
            hosts("stop", check=False)
            hosts("start", str(n))
            try:
                for link, rate in LINKS.items():
                    shape(n, rate)
                    runs = {name: [] for name, _ in MODES}
                    for r in range(args.repeats):
                        # Alternate the order, so a busy moment does not always hit one side.
                        order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
                        for name, run in order:
                            result = run(n, args.steps, scratch)
                            bench.log(f"{n} hosts, {link}, {name}: {result[0]:,.0f} images/s, {result[1] / 1e3:,.0f} kB/step")
                            runs[name].append(result)
                    rows.append((n, link, runs))
            finally:
                shape(n, None)
                hosts("stop", check=False)
        if max(counts) >= 4:
            out = subprocess.run(train_args(args.steps, []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True).stdout
            serial_digest = digest_of(out)
    report(args, rows, serial_digest)


def report(args, rows, serial_digest):
    names = [name for name, _ in MODES]
    print(f"\nseed-cnn, batch 64, 1 thread per rank, one rank per namespace host; images/s, median of "
          f"{args.repeats} (min–max); {args.steps} timed steps after {bench.WARMUP_STEPS} warm-up\n")
    print("| hosts | link | " + " | ".join(names) + " | exact ÷ DDP | exact ÷ float |")
    print("|--:|---|" + "--:|" * (len(names) + 2))
    for n, link, runs in rows:
        med = {name: statistics.median(r[0] for r in runs[name]) for name in names}
        cells = [f"{med[name]:,.0f} ({min(r[0] for r in runs[name]):,.0f}–{max(r[0] for r in runs[name]):,.0f})"
                 for name in names]
        print(f"| {n} | {link} | " + " | ".join(cells) +
              f" | {med[names[0]] / med[names[2]]:.2f}× | {med[names[0]] / med[names[1]]:.2f}× |")
    print("\nBytes h1 sends per step (its lan0 counter over the run ÷ steps, warm-up and start-up included), median:\n")
    print("| hosts | " + " | ".join(names) + " |")
    print("|--:|" + "--:|" * len(names))
    for n in sorted({n for n, _, _ in rows}):
        cells = [f"{statistics.median(r[1] for (m, _, runs) in rows if m == n for r in runs[name]) / 1e3:,.0f} kB"
                 for name in names]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\nNotes: the machine has " + str(os.cpu_count()) + " cores; scripts/local-hosts gives each host a share "
          "(with more hosts than cores, hosts share a core, so 4 hosts oversubscribe and time-slice).")
    four = [runs["ours exact"] for n, _, runs in rows if n >= 4]
    if serial_digest:
        digests = {r[2] for runs in four for r in runs}
        same = digests == {serial_digest}
        print(f"Digest check: every {max(n for n, _, _ in rows)}-host exact run "
              f"{'equals' if same else 'DIFFERS FROM'} the serial run's ({serial_digest}).")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "torch-rank":
        torch_rank(sys.argv[2:])
    else:
        main()
