#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for the Swift engine tests.

Run through scripts/make-fixtures, which provides a venv with torch.
Writes one JSON file per case into Tests/EngineTests/Fixtures/:

  {"case": "<case>", "generator": "torch <version>", "call": "<python source>",
   "tensors": {"<name>": {"shape": [d0, ...], "data": [flat row-major floats]}, ...}}

Every case is a snippet of Python source that is executed as-is; the snippet
itself is stored in "call", so the fixture says exactly how it was produced.
All tensors are float32; integer labels are written as floats. Each float is
written with 9 significant digits, which round-trips float32 exactly (also
when read as a Double and then narrowed to Float). Gradients follow the
convention: dy = torch.randn_like(y), and dx/dweight/dbias come from
(y * dy).sum().backward().

The two training-step cases (seed_cnn_step, seed_cnn_bn_step) differ: their
initial parameters and batch are not stored but given by a top-level
"formula" string (see FORMULA), and any tensor with more than 2000 elements
has an extra "stride": 101 key with "data" holding flat[::101] ("shape" stays
the full shape).
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "Tests", "EngineTests", "Fixtures")

# One thread: keeps CPU kernels' reduction order fixed run to run.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

GENERATOR = f"torch {torch.__version__}"

# ---------------------------------------------------------------------------
# Cases. Each snippet runs in a fresh namespace with torch, nn, F defined and
# must leave the named tensors in it. torch.manual_seed is set inside each.

CONV_TEMPLATE = """\
torch.manual_seed({seed})
x = torch.randn({xshape}, requires_grad=True)
weight = torch.randn({wshape}, requires_grad=True)
bias = torch.randn({bshape}, requires_grad=True)
y = F.conv2d(x, weight, bias, stride={stride}, padding={padding})
dy = torch.randn_like(y)
(y * dy).sum().backward()
dx, dweight, dbias = x.grad, weight.grad, bias.grad
"""

POOL_TEMPLATE = """\
torch.manual_seed({seed})
x = torch.randn({xshape}, requires_grad=True)
y = F.{fn}(x, kernel_size={k}, stride={s})
dy = torch.randn_like(y)
(y * dy).sum().backward()
dx = x.grad
"""

POINTWISE_TEMPLATE = """\
torch.manual_seed({seed})
x = torch.cat([torch.linspace(-6, 6, 61), torch.randn(3)]).requires_grad_()
y = {expr}
dy = torch.randn_like(y)
(y * dy).sum().backward()
dx = x.grad
"""

# Three optimizer steps on a flat parameter vector of 37 floats (two vectors of 16 and a tail),
# each step's gradient given; the parameters after each step and the final state are stored.
OPTIMIZER_TEMPLATE = """\
torch.manual_seed({seed})
p0 = torch.randn(37)
grads = torch.randn(3, 37)
p = p0.clone().requires_grad_()
opt = torch.optim.{cls}([p], lr=0.01, betas={betas}, eps={eps}, weight_decay={wd}, foreach=False)
after = []
for g in grads:
    p.grad = g.clone()
    opt.step()
    after.append(p.detach().clone())
after = torch.stack(after)
exp_avg, exp_avg_sq = opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]
"""

OPTIMIZER_NAMES = ["p0", "grads", "after", "exp_avg", "exp_avg_sq"]

GRAD_NAMES = ["x", "weight", "bias", "y", "dy", "dx", "dweight", "dbias"]

# torchvision's training transforms, RandomCrop(padding=2) -> RandomHorizontalFlip -> ToTensor
# -> Normalize(mean, std) -> RandomErasing(value=0), written out in torch with each random
# draw fixed (a row of draws: crop top and left in the padded image, flip, erased top, left,
# height, width), so the Swift test can apply the same draws to the same bytes.
AUGMENTATION = """\
torch.manual_seed(21)
image = torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8)
mean = torch.tensor([0.3, 0.5, 0.6])
std = torch.tensor([0.2, 0.25, 0.3])
draws = torch.tensor([[2, 2, 0, 0, 0, 0, 0], [0, 4, 1, 1, 1, 2, 3], [4, 0, 0, 3, 2, 2, 2],
                      [1, 3, 1, 0, 0, 0, 0], [4, 4, 1, 5, 4, 1, 1]])
outputs = []
for top, left, flip, i, j, h, w in draws.tolist():
    y = F.pad(image, (2, 2, 2, 2))[:, top:top + 6, left:left + 5]   # RandomCrop(padding=2)
    if flip:
        y = y.flip(-1)                                              # RandomHorizontalFlip
    y = y.float().div(255)                                          # ToTensor
    y = y.sub(mean[:, None, None]).div(std[:, None, None])          # Normalize
    y[:, i:i + h, j:j + w] = 0                                      # RandomErasing(value=0)
    outputs.append(y)
y = torch.stack(outputs)
x = image.float()
draws = draws.float()
"""

SMALL_CASES = {
    "augmentation": (AUGMENTATION, ["x", "mean", "std", "draws", "y"]),
    "conv2d_s1p0": (
        CONV_TEMPLATE.format(seed=1, xshape="2, 3, 6, 6", wshape="4, 3, 3, 3",
                             bshape="4", stride=1, padding=0),
        GRAD_NAMES,
    ),
    "conv2d_s2p1": (
        CONV_TEMPLATE.format(seed=2, xshape="2, 2, 7, 7", wshape="3, 2, 3, 3",
                             bshape="3", stride=2, padding=1),
        GRAD_NAMES,
    ),
    # 3x3, stride 1, channels in whole vectors of 16: the Winograd path. Odd output sizes
    # leave partial 2x2 tiles: at the right in p0 (4x5 output), at the bottom and the right
    # in p1 (5x5).
    "conv2d_winograd_p0": (
        CONV_TEMPLATE.format(seed=11, xshape="2, 16, 6, 7", wshape="16, 16, 3, 3",
                             bshape="16", stride=1, padding=0),
        GRAD_NAMES,
    ),
    "conv2d_winograd_p1": (
        CONV_TEMPLATE.format(seed=12, xshape="2, 16, 5, 5", wshape="32, 16, 3, 3",
                             bshape="32", stride=1, padding=1),
        GRAD_NAMES,
    ),
    "maxpool2d_k2s2": (
        POOL_TEMPLATE.format(seed=3, xshape="2, 3, 6, 6", fn="max_pool2d", k=2, s=2),
        ["x", "y", "dy", "dx"],
    ),
    "maxpool2d_k3s2": (
        POOL_TEMPLATE.format(seed=4, xshape="1, 2, 7, 7", fn="max_pool2d", k=3, s=2),
        ["x", "y", "dy", "dx"],
    ),
    "avgpool2d_k2s2": (
        POOL_TEMPLATE.format(seed=5, xshape="2, 3, 6, 6", fn="avg_pool2d", k=2, s=2),
        ["x", "y", "dy", "dx"],
    ),
    "linear": (
        """\
torch.manual_seed(6)
x = torch.randn(4, 5, requires_grad=True)
weight = torch.randn(3, 5, requires_grad=True)
bias = torch.randn(3, requires_grad=True)
y = F.linear(x, weight, bias)
dy = torch.randn_like(y)
(y * dy).sum().backward()
dx, dweight, dbias = x.grad, weight.grad, bias.grad
""",
        GRAD_NAMES,
    ),
    "batchnorm2d_train": (
        """\
torch.manual_seed(7)
bn = nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)  # running_mean 0, running_var 1
with torch.no_grad():
    bn.weight.copy_(torch.randn(3))
    bn.bias.copy_(torch.randn(3))
bn.train()
x = (torch.randn(4, 3, 5, 5) * 2 + 0.5).requires_grad_()
y = bn(x)  # updates running stats (running_var uses the unbiased variance)
dy = torch.randn_like(y)
(y * dy).sum().backward()
weight, bias = bn.weight, bn.bias
dx, dweight, dbias = x.grad, bn.weight.grad, bn.bias.grad
running_mean, running_var = bn.running_mean, bn.running_var
""",
        GRAD_NAMES + ["running_mean", "running_var"],
    ),
    "batchnorm2d_eval": (
        """\
torch.manual_seed(8)
bn = nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
with torch.no_grad():
    bn.weight.copy_(torch.randn(3))
    bn.bias.copy_(torch.randn(3))
    bn.running_mean.copy_(torch.randn(3))
    bn.running_var.copy_(torch.rand(3) + 0.5)
bn.eval()
x = torch.randn(2, 3, 4, 4, requires_grad=True)
y = bn(x)
dy = torch.randn_like(y)
(y * dy).sum().backward()
weight, bias = bn.weight, bn.bias
running_mean, running_var = bn.running_mean, bn.running_var
dx = x.grad
""",
        ["x", "weight", "bias", "running_mean", "running_var", "y", "dy", "dx"],
    ),
    "relu": (
        POINTWISE_TEMPLATE.format(seed=9, expr="F.relu(x)"),
        ["x", "y", "dy", "dx"],
    ),
    "gelu": (
        POINTWISE_TEMPLATE.format(seed=10, expr="F.gelu(x, approximate='none')"),
        ["x", "y", "dy", "dx"],
    ),
    "tanh": (
        POINTWISE_TEMPLATE.format(seed=11, expr="torch.tanh(x)"),
        ["x", "y", "dy", "dx"],
    ),
    "cross_entropy": (
        """\
torch.manual_seed(12)
logits = (torch.randn(6, 10) * 3).requires_grad_()
labels = torch.randint(0, 10, (6,))
loss = F.cross_entropy(logits, labels)  # reduction='mean'
loss.backward()
dlogits = logits.grad
""",
        ["logits", "labels", "loss", "dlogits"],
    ),
    "adam": (OPTIMIZER_TEMPLATE.format(seed=20, cls="Adam", betas=(0.9, 0.999), eps=1e-8, wd=0), OPTIMIZER_NAMES),
    "adam_l2": (OPTIMIZER_TEMPLATE.format(seed=21, cls="Adam", betas=(0.8, 0.99), eps=1e-6, wd=0.1), OPTIMIZER_NAMES),
    # β1 = 0.3: torch.lerp's other form (weight 1 − β1 ≥ 0.5).
    "adamw": (OPTIMIZER_TEMPLATE.format(seed=22, cls="AdamW", betas=(0.3, 0.99), eps=1e-8, wd=0), OPTIMIZER_NAMES),
    "adamw_decay": (OPTIMIZER_TEMPLATE.format(seed=23, cls="AdamW", betas=(0.8, 0.99), eps=1e-6, wd=0.1), OPTIMIZER_NAMES),
    "cross_entropy_smoothed": (
        """\
torch.manual_seed(14)
logits = (torch.randn(6, 10) * 3).requires_grad_()
labels = torch.randint(0, 10, (6,))
loss = F.cross_entropy(logits, labels, label_smoothing=0.1)  # reduction='mean'
loss.backward()
dlogits = logits.grad
""",
        ["logits", "labels", "loss", "dlogits"],
    ),
    # nll_loss has no label smoothing: a model ending in LogSoftmax gets cross_entropy's
    # smoothing applied to its log-probabilities (log_softmax leaves them unchanged).
    "log_softmax_smoothed": (
        """\
torch.manual_seed(15)
logits = (torch.randn(6, 10) * 3).requires_grad_()
labels = torch.randint(0, 10, (6,))
loss = F.cross_entropy(F.log_softmax(logits, 1), labels, label_smoothing=0.1)  # reduction='mean'
loss.backward()
dlogits = logits.grad
""",
        ["logits", "labels", "loss", "dlogits"],
    ),
    "clip_grad_norm": (
        """\
torch.manual_seed(16)
grads = [torch.randn(4200) * 0.05, torch.randn(3, 7)]  # more than one 4096-float block
params = [torch.zeros_like(g, requires_grad=True) for g in grads]
for p, g in zip(params, grads):
    p.grad = g.clone()
norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0, foreach=False)
gradient = torch.cat([g.reshape(-1) for g in grads])
clipped = torch.cat([p.grad.reshape(-1) for p in params])
""",
        ["gradient", "norm", "clipped"],
    ),
    "log_softmax_nll": (
        """\
torch.manual_seed(13)
logits = (torch.randn(6, 10) * 3).requires_grad_()
labels = torch.randint(0, 10, (6,))
loss = F.nll_loss(F.log_softmax(logits, 1), labels)  # reduction='mean'
loss.backward()
dlogits = logits.grad
""",
        ["logits", "labels", "loss", "dlogits"],
    ),
}

SEED_CNN = """\
class SeedCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)   # [N,32,13,13]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)   # [N,64,5,5]
        x = torch.flatten(x, 1)                      # [N,1600]
        return self.fc2(F.relu(self.fc1(x)))

model = SeedCNN()                   # parameters are overwritten by FORMULA_INIT
assert sum(p.numel() for p in model.parameters()) == 225034
"""

SEED_CNN_BN = """\
class SeedCNNBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.bn1 = nn.BatchNorm2d(32)                # eps=1e-5, momentum=0.1
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(1600, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))

model = SeedCNNBN()                 # parameters are overwritten by FORMULA_INIT
assert sum(p.numel() for p in model.parameters()) == 225034 + 2 * (32 + 64)
"""

# Initial parameters and the batch are not stored: both sides compute them
# from FORMULA (written verbatim into the fixture). FORMULA_INIT is its code.
FORMULA = (
    "Initial parameters: for the t-th parameter tensor in state_dict order "
    "(parameters only, t = 0, 1, 2, ...; seed_cnn_step: conv1.weight, conv1.bias, "
    "conv2.weight, conv2.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias; "
    "seed_cnn_bn_step: conv1.weight, conv1.bias, bn1.weight, bn1.bias, conv2.weight, "
    "conv2.bias, bn2.weight, bn2.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias), "
    "element i (flat row-major index) is float32(b * math.sin(0.618 * i + t)), "
    "computed in float64 with Python's math.sin, where b = 1/sqrt(fan_in) for conv "
    "and linear weights and biases (fan_in = in_channels*k*k for conv, in_features "
    "for linear); batch-norm weight element i is float32(1 + 0.1*math.sin(0.618*i + t)) "
    "and batch-norm bias element i is float32(0.1*math.sin(0.618*i + t)). "
    "Batch-norm running stats start at PyTorch defaults (running_mean 0, running_var 1). "
    "Batch: x has shape [8,1,28,28] with flat row-major element j = "
    "float32(0.5 + 0.5*math.sin(0.1*j)); labels[n] = n % 10 for n = 0..7. "
    "Tensors with more than 2000 elements are stored subsampled: \"stride\": 101 and "
    "data = flat[::101] (elements 0, 101, 202, ...), shape is the full shape."
)

FORMULA_INIT = """\
import math
params = dict(model.named_parameters())
with torch.no_grad():
    # t-th parameter tensor in state_dict order (running stats keep defaults 0 / 1)
    for t, k in enumerate(k for k in model.state_dict() if k in params):
        p = params[k]
        mod = model.get_submodule(k.rsplit(".", 1)[0])
        s = [math.sin(0.618 * i + t) for i in range(p.numel())]   # float64
        if isinstance(mod, nn.BatchNorm2d):
            v = [1 + 0.1 * e for e in s] if k.endswith("weight") else [0.1 * e for e in s]
        else:
            fan_in = mod.weight[0].numel()          # in_channels*k*k or in_features
            b = 1 / math.sqrt(fan_in)
            v = [b * e for e in s]
        p.copy_(torch.tensor(v, dtype=torch.float64).to(torch.float32).reshape(p.shape))
x = (torch.tensor([0.5 + 0.5 * math.sin(0.1 * j) for j in range(8 * 28 * 28)],
                  dtype=torch.float64).to(torch.float32).reshape(8, 1, 28, 28))
labels = torch.tensor([n % 10 for n in range(8)])
"""

TRAIN_TWO_STEPS = """\
model.train()
out = {}
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
for step in (1, 2):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), labels)        # reduction='mean'
    loss.backward()
    out[f"loss{step}"] = loss.detach().clone()
    if step == 1:
        for k, p in model.named_parameters():
            out[f"grad.{k}"] = p.grad.clone()
    opt.step()
for k, v in model.state_dict().items():
    if not k.endswith("num_batches_tracked"):
        out[f"step2.{k}"] = v.clone()               # params (+ BN running stats)
# Stored subsampled when numel > SUBSAMPLE_ABOVE: "stride": 101, data = flat[::101].
"""

CNN_CASES = {
    "seed_cnn_step": SEED_CNN + FORMULA_INIT + TRAIN_TWO_STEPS,
    "seed_cnn_bn_step": SEED_CNN_BN + FORMULA_INIT + TRAIN_TWO_STEPS,
}

# CNN-case tensors with more than this many elements store flat[::SUBSAMPLE_STRIDE].
SUBSAMPLE_ABOVE = 2000
SUBSAMPLE_STRIDE = 101

# ---------------------------------------------------------------------------
# Output


def fmt(v):
    """9 significant digits: exact float32 round trip, also via Double."""
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {v}")
    s = f"{v:.9g}"
    back = struct.unpack("f", struct.pack("f", float(s)))[0]
    assert back == v or (back != back and v != v), (v, s)
    return s


def tensor_json(t, subsample=False):
    """subsample: tensors with > SUBSAMPLE_ABOVE elements store flat[::stride]."""
    t = t.detach()
    if t.dtype != torch.float32:
        assert t.dtype in (torch.int64, torch.int32), t.dtype
        t = t.to(torch.float32)
    shape = list(t.shape)
    flat = t.contiguous().reshape(-1)
    stride = ""
    if subsample and flat.numel() > SUBSAMPLE_ABOVE:
        flat = flat[::SUBSAMPLE_STRIDE]
        stride = f',"stride":{SUBSAMPLE_STRIDE}'
    data = flat.tolist()
    return ('{"shape":[' + ",".join(str(d) for d in shape) + "]" + stride + ',"data":['
            + ",".join(fmt(v) for v in data) + "]}")


def write_case(case, call, tensors, formula=None, subsample=False):
    parts = [
        '"case":' + json.dumps(case),
        '"generator":' + json.dumps(GENERATOR),
        '"call":' + json.dumps(call),
    ]
    if formula is not None:
        parts.append('"formula":' + json.dumps(formula))
    parts += [
        '"tensors":{' + ",".join(json.dumps(k) + ":" + tensor_json(v, subsample)
                                 for k, v in tensors.items()) + "}",
    ]
    path = os.path.join(OUT_DIR, case + ".json")
    with open(path, "w") as f:
        f.write("{" + ",".join(parts) + "}\n")
    return path


def run(code):
    ns = {"torch": torch, "nn": nn, "F": F}
    exec(compile(code, "<case>", "exec"), ns)
    return ns


def check(path, case):
    cnn = case in CNN_CASES
    with open(path) as f:
        doc = json.load(f)
    keys = {"case", "generator", "call", "tensors"} | ({"formula"} if cnn else set())
    assert set(doc) == keys, doc.keys()
    assert doc["case"] == case and doc["generator"] == GENERATOR
    assert isinstance(doc["call"], str) and doc["call"]
    if cnn:
        assert doc["formula"] == FORMULA, case
    assert doc["tensors"], case
    for name, t in doc["tensors"].items():
        n = math.prod(t["shape"])  # prod([]) == 1 for scalars
        if "stride" in t:
            assert cnn and n > SUBSAMPLE_ABOVE, (case, name, t["shape"])
            assert set(t) == {"shape", "stride", "data"}, (case, name, t.keys())
            assert t["stride"] == SUBSAMPLE_STRIDE, (case, name, t["stride"])
            assert len(t["data"]) == math.ceil(n / t["stride"]), (case, name, len(t["data"]))
        else:
            assert set(t) == {"shape", "data"}, (case, name, t.keys())
            assert not (cnn and n > SUBSAMPLE_ABOVE), (case, name, t["shape"])
            assert len(t["data"]) == n, (case, name, t["shape"], len(t["data"]))
        assert all(isinstance(v, (int, float)) for v in t["data"]), (case, name)


def main():
    only = set(sys.argv[1:])
    os.makedirs(OUT_DIR, exist_ok=True)
    written = []
    for case, (code, names) in SMALL_CASES.items():
        if only and case not in only:
            continue
        ns = run(code)
        tensors = {n: ns[n] for n in names}
        for t in tensors.values():
            assert t.dtype in (torch.float32, torch.int64), (case, t.dtype)
        if case == "relu":
            assert (ns["x"] != 0).all()
        written.append((write_case(case, code, tensors), case))
    for case, code in CNN_CASES.items():
        if only and case not in only:
            continue
        out = run(code)["out"]
        written.append((write_case(case, code, out, formula=FORMULA, subsample=True), case))
    for path, case in written:
        check(path, case)
        print(f"{os.path.getsize(path):>10}  {os.path.relpath(path, REPO)}")
    print(f"{len(written)} fixtures written and checked ({GENERATOR})")


if __name__ == "__main__":
    main()
