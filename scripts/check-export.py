"""Checks a checkpoint's safetensors export against PyTorch (run through scripts/check-export).

Runs `swift-cnn-train export` and `predict --top <classes>`, loads the export into the module
of docs/export.md with load_state_dict(strict=True), runs the split's images through it, and
fails unless every predicted class matches ours and every probability is within --tolerance.
Then does the same for `predict --image` on the first --images images written as PGM/PPM.
The module class and the loader are taken from docs/export.md, so the documented code is the
code checked.
"""
import argparse
import csv
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message):
    print(f"check-export: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def documented_code():
    """The Python blocks of docs/export.md marked as run by this script, executed."""
    text = open(os.path.join(REPO, "docs/export.md"), encoding="utf-8").read()
    blocks = re.findall(r"<!-- scripts/check-export runs this block -->\n```python\n(.*?)```", text, re.S)
    if len(blocks) != 2:
        fail(f"docs/export.md has {len(blocks)} marked python blocks, expected 2 (the module and the loader)")
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/export.md", "exec"), namespace)
    return namespace["SpecNet"], namespace["load_safetensors"]


def run(binary, *args):
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{os.path.basename(binary)} {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(f">{magic & 0xFF}I", data[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims).copy()


def load_images(directory, split):
    """The split's images as uint8 N×C×H×W, from MNIST-format IDX files or CIFAR-10 batches."""
    stem = "t10k" if split == "test" else "train"
    for name in (f"{stem}-images-idx3-ubyte", f"{stem}-images-idx3-ubyte.gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            images = read_idx(path)
            return images.reshape(images.shape[0], 1, images.shape[1], images.shape[2])
    for base in (directory, os.path.join(directory, "cifar-10-batches-bin")):
        names = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
        paths = [os.path.join(base, n) for n in names if os.path.exists(os.path.join(base, n))]
        if paths:
            records = np.concatenate([np.fromfile(p, dtype=np.uint8).reshape(-1, 3073) for p in paths])
            return records[:, 1:].reshape(-1, 3, 32, 32)
    fail(f"no MNIST-format IDX files or CIFAR-10 batches in {directory} (synthetic data cannot be checked here)")


def write_netpbm(path, image):
    """A binary PGM (one channel) or PPM (three, interleaved) of a C×H×W uint8 image."""
    channels, height, width = image.shape
    magic = {1: "P5", 3: "P6"}[channels]
    with open(path, "wb") as f:
        f.write(f"{magic}\n{width} {height}\n255\n".encode())
        f.write(np.ascontiguousarray(image.transpose(1, 2, 0)).tobytes())


def read_predictions(path, classes):
    """Our CSV (--top classes) as the first column and an N×classes probability array."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    expected = ["predicted", "confidence"] + [x for k in range(2, classes + 1) for x in (f"top{k}", f"p{k}")]
    if rows[0][1:] != expected:
        fail(f"predict's header is {rows[0]}")
    keys, predicted, probabilities = [], [], np.zeros((len(rows) - 1, classes))
    for i, row in enumerate(rows[1:]):
        keys.append(row[0])
        predicted.append(int(row[1]))
        for k in range(classes):
            probabilities[i, int(row[1 + 2 * k])] = float(row[2 + 2 * k])
    return keys, np.array(predicted), probabilities


def compare(what, ours_predicted, ours_p, torch_p, tolerance):
    """Fails unless the classes match and the probabilities are within tolerance; returns the largest difference."""
    torch_predicted = torch_p.argmax(axis=1)
    mismatched = np.flatnonzero(ours_predicted != torch_predicted)
    difference = np.abs(ours_p - torch_p)
    worst = float(difference.max()) if difference.size else 0.0
    if len(mismatched):
        i = mismatched[0]
        fail(f"{what}: {len(mismatched)} of {len(ours_predicted)} predictions differ from PyTorch's "
             f"(first: sample {i}, ours {ours_predicted[i]}, PyTorch {torch_predicted[i]})")
    if worst > tolerance:
        i = int(np.unravel_index(difference.argmax(), difference.shape)[0])
        fail(f"{what}: a probability differs by {worst:.3g} > {tolerance:g} (sample {i})")
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--binary", required=True)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (default: all)")
    parser.add_argument("--images", type=int, default=5, help="images to check as PGM/PPM files (default: 5)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    SpecNet, load_safetensors = documented_code()
    with tempfile.TemporaryDirectory(prefix="check-export-") as work:
        check(args, SpecNet, load_safetensors, work)


def check(args, SpecNet, load_safetensors, work):
    exported = os.path.join(work, "model.safetensors")
    run(args.binary, "export", args.checkpoint, "--format", "safetensors", "-o", exported)

    state, meta = load_safetensors(exported)
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        loaders = "torch-only loader"
    else:
        reference = load_file(exported)
        with safe_open(exported, framework="pt") as f:
            if f.metadata() != meta:
                fail("the safetensors package reads different metadata")
        if reference.keys() != state.keys() or not all(torch.equal(reference[k], state[k]) for k in state):
            fail("the safetensors package and the torch-only loader read different tensors")
        loaders = f"safetensors {__import__('safetensors').__version__} and the torch-only loader agree"

    model = SpecNet.from_metadata(meta)
    model.load_state_dict(state, strict=True)
    model.eval()
    classes = int(meta["classes"])

    images = load_images(args.data, args.split)
    if args.limit is not None:
        images = images[:args.limit]
    if list(images.shape[1:]) != model.input_shape:
        fail(f"the data's images are {list(images.shape[1:])}, the model takes {model.input_shape}")
    predictions = os.path.join(work, "predictions.csv")
    limit = ["--limit", str(args.limit)] if args.limit is not None else []
    run(args.binary, "predict", "--checkpoint", args.checkpoint, "--data", args.data, "--split", args.split,
        "--top", str(classes), "-o", predictions, *limit)
    keys, ours_predicted, ours_p = read_predictions(predictions, classes)
    if keys != [str(i) for i in range(len(images))]:
        fail(f"predict wrote {len(keys)} rows for {len(images)} images")
    torch_p = model.probabilities(images).numpy()
    worst = compare("predict", ours_predicted, ours_p, torch_p, args.tolerance)

    paths = []
    for i in range(min(args.images, len(images))):
        paths.append(os.path.join(work, f"image-{i}.{'pgm' if images.shape[1] == 1 else 'ppm'}"))
        write_netpbm(paths[-1], images[i])
    if paths:
        image_csv = os.path.join(work, "images.csv")
        run(args.binary, "predict", "--checkpoint", args.checkpoint, "--top", str(classes), "-o", image_csv,
            *[a for p in paths for a in ("--image", p)])
        keys, image_predicted, image_p = read_predictions(image_csv, classes)
        if keys != paths:
            fail(f"predict --image wrote rows for {keys}")
        worst = max(worst, compare("predict --image", image_predicted, image_p, torch_p[:len(paths)], args.tolerance))

    name = meta.get("preset", meta["model"])
    print(f"check-export: {name} (step {meta['step']}): load_state_dict(strict=True) took {len(state)} tensors "
          f"({loaders}); {len(images)}/{len(images)} {args.split} predictions and {len(paths)}/{len(paths)} "
          f"PGM/PPM predictions match PyTorch; largest probability difference {worst:.2e} (tolerance {args.tolerance:g})")


if __name__ == "__main__":
    main()
