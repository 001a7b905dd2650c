#!/usr/bin/env python3
"""PyTorch reference of our training step, for benchmarks/torchref (issue 15).

The yardstick backbone (SPEC section 2; trainers/nn IRResNet, module and
tensor names as ours, so a parameter file of ours loads by name) and the
two steps our engine runs on it:

  --mode ffc  the FFC iteration of trainers/engine StepFFC: x = [a1; h1],
              y = [a2; h2] (B id images + B/2 instance images each); the
              gallery's moving average (from the second step on); pass L2:
              gallery(y) (no grad, train-mode BN) inserted into the pool
              temporarily, probe(x) forward, loss, backward, pool rolled
              back; pass L1: gallery(x) inserted for good, probe(y)
              forward, loss, backward; one SGD step. That is two gallery
              forwards and two probe forward+backward passes of 1.5·B rows.
  --mode fc   the full FC step of StepPlain: probe(x) on B images, CosFace
              over N classes with raw weights W (N×D) normalised in the
              graph, backward, one SGD step of the probe and W.
  --mode sgemm  torch.mm of two S×S float32 matrices (the BLAS ceiling).
  --mode train  full-FC (CosFace) training of the backbone on a data set's
              train split (issue 16's PyTorch FC row), driven by
              `go run ./benchmarks/torchref train`: the inputs already
              scaled (--inputs, float32 n×1024), their dense labels
              (--labels, int32), the rate of every step (--lrs, float64),
              computed by the driver with our schedule, and the tensor
              names and shapes our parameter file lists (--tensors, JSON);
              instances drawn in shuffled epochs (our InstanceLoader), SGD
              with Nesterov momentum 0.9 over the probe and the N×D class
              weights (normal(0, 0.01), normalised in the graph); at the
              end the probe's tensors go, in the listed order, to
              --params-out as raw float32, which the driver saves as a
              checkpoint. Progress goes to stderr as JSON lines.

It prints one JSON line. With --dump-forward OUT --weights FILE --input IN
it instead loads a parameter file written by trainers/nn SaveParams, runs
the inputs (float32, n×1024) through the backbone in eval mode and in train
mode, and writes the two n×D embedding blocks (float32, little-endian) to
OUT: the parity test compares them with our forward.

Use Debian's python3-torch (1.13) as /usr/bin/python3; only torch 1.13 APIs.
"""

import argparse
import os
import sys


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (torch.set_num_threads; OpenMP and OpenBLAS too)")
    ap.add_argument("--mode", choices=["ffc", "fc", "sgemm", "train"], default="ffc")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=64, help="B")
    ap.add_argument("--dim", type=int, default=128, help="D")
    ap.add_argument("--pool", type=int, default=1000, help="Q, the FFC pool's slots")
    ap.add_argument("--classes", type=int, default=10000, help="N: the FC head's classes, and the IDs labels are drawn from")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="on conv and linear weights (and the FC weights), as our SGD")
    ap.add_argument("--init", choices=["kaiming", "uniform"], default="kaiming", help="kaiming: N(0, 2/fan_in), biases 0 (ours); uniform: torch's default")
    ap.add_argument("--sgemm-size", type=int, default=2048)
    ap.add_argument("--sgemm-reps", type=int, default=3)
    ap.add_argument("--dump-forward", metavar="OUT", help="parity mode: write eval and train embeddings of --input here")
    ap.add_argument("--weights", metavar="FILE", help="parity mode: a parameter file of trainers/nn (SaveParams)")
    ap.add_argument("--input", metavar="FILE", help="parity mode: float32 inputs, n×1024")
    ap.add_argument("--inputs", metavar="FILE", help="train mode: the train images, float32 n×1024, scaled")
    ap.add_argument("--labels", metavar="FILE", help="train mode: their dense labels 0 … classes−1, int32")
    ap.add_argument("--lrs", metavar="FILE", help="train mode: the learning rate of each step, float64")
    ap.add_argument("--tensors", metavar="FILE", help="train mode: JSON list of [name, shape] of our probe's tensors, in file order")
    ap.add_argument("--params-out", metavar="FILE", help="train mode: where the trained tensors go, raw float32 in --tensors order")
    ap.add_argument("--wd-scope", choices=["weights", "all"], default="weights", help="train mode: weight decay on conv/linear weights and W, or on every parameter")
    ap.add_argument("--scale", type=float, default=MARGIN_S_DEFAULT, help="CosFace scale s")
    ap.add_argument("--margin", type=float, default=MARGIN_M_DEFAULT, help="CosFace margin m")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    ap.add_argument("--log-every", type=int, default=50, help="train mode: a progress line every N steps")
    a = ap.parse_args(argv)
    if a.mode == "train" and not (a.inputs and a.labels and a.lrs and a.tensors and a.params_out):
        ap.error("--mode train needs --inputs, --labels, --lrs, --tensors and --params-out")
    if a.threads < 1 or a.steps < 1 or a.warmup < 0 or a.batch < 2 or a.dim < 1 or a.classes < 1:
        ap.error("need threads ≥ 1, steps ≥ 1, warmup ≥ 0, batch ≥ 2, dim ≥ 1, classes ≥ 1")
    if a.mode == "ffc" and a.pool < a.batch + (a.batch + 1) // 2:
        ap.error("--pool %d is below the 1.5·B = %d gallery features one pass writes" % (a.pool, a.batch + (a.batch + 1) // 2))
    if a.dump_forward and not (a.weights and a.input):
        ap.error("--dump-forward needs --weights and --input")
    return a


MARGIN_S_DEFAULT, MARGIN_M_DEFAULT = 32.0, 0.4  # CosFace, the engine's default margin

if __name__ == "__main__":
    ARGS = parse_args()
    # Before torch loads: OpenMP reads these at start, and torch's generic
    # BLAS is Debian's pthread OpenBLAS, which torch.set_num_threads does
    # not reach.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import copy  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
from collections import OrderedDict  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

IN_CH, IN_SIZE, WIDTHS, BLOCKS = 1, 32, (32, 64, 128), (1, 1, 1)
EMA = 0.99


# ---------------------------------------------------------------- backbone


def bn2d(c):
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ConvBNPReLU(nn.Module):
    """conv3x3 + BN + PReLU (per channel, 0.25): "<prefix>.conv/.bn/.prelu"."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = conv3x3(cin, cout, stride)
        self.bn = bn2d(cout)
        self.prelu = nn.PReLU(cout, init=0.25)

    def forward(self, x):
        return self.prelu(self.bn(self.conv(x)))


class IRBlock(nn.Module):
    """y = x + BN(conv3x3(PReLU(BN(conv3x3(BN(x))))))."""

    def __init__(self, c):
        super().__init__()
        self.bn1 = bn2d(c)
        self.conv1 = conv3x3(c, c)
        self.bn2 = bn2d(c)
        self.prelu = nn.PReLU(c, init=0.25)
        self.conv2 = conv3x3(c, c)
        self.bn3 = bn2d(c)

    def forward(self, x):
        return x + self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))


class Stage(nn.Module):
    """An optional stride-2 ConvBNPReLU ("down"), then "block0", "block1", …"""

    def __init__(self, cin, cout, blocks, down):
        super().__init__()
        if down:
            self.down = ConvBNPReLU(cin, cout, 2)
        for b in range(blocks):
            setattr(self, "block%d" % b, IRBlock(cout))

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class Head(nn.Module):
    """BN2d, flatten (C, H, W order), Linear → D, BN1d, L2-normalise."""

    def __init__(self, c, hw, dim):
        super().__init__()
        self.bn2d = bn2d(c)
        self.fc = nn.Linear(c * hw, dim)
        self.bn1d = nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1)

    def forward(self, x):
        x = torch.flatten(self.bn2d(x), 1)
        return F.normalize(self.bn1d(self.fc(x)), dim=1, eps=1e-12)


class IRResNet(nn.Module):
    """The yardstick backbone, as trainers/nn NewIRResNet builds it."""

    def __init__(self, dim, init="kaiming"):
        super().__init__()
        self.stem = ConvBNPReLU(IN_CH, WIDTHS[0], 1)
        size = IN_SIZE
        for i, w in enumerate(WIDTHS):
            setattr(self, "stage%d" % (i + 1), Stage(WIDTHS[i - 1] if i else w, w, BLOCKS[i], i > 0))
            if i > 0:
                size //= 2
        self.head = Head(WIDTHS[-1], size * size, dim)
        if init == "kaiming":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        for i in range(len(WIDTHS)):
            x = getattr(self, "stage%d" % (i + 1))(x)
        return self.head(x)


def param_groups(modules):
    """Our SGD's weight decay scope: conv and linear weights (and the FC
    head's weights) decay; biases, BatchNorm and PReLU do not."""
    decay, rest = [], []
    for mod in modules:
        for m in mod.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, (nn.Conv2d, nn.Linear)) and name == "weight":
                    decay.append(p)
                else:
                    rest.append(p)
    return decay, rest


def make_sgd(decay, rest, lr, wd, momentum=0.9):
    return torch.optim.SGD([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                           lr=lr, momentum=momentum, nesterov=True)


# ------------------------------------------------------------ losses, pool


def cosface_ce(cos, targets, s=MARGIN_S_DEFAULT, m=MARGIN_M_DEFAULT):
    """Mean over rows of the CosFace (s·(cos − m) at the target) softmax CE."""
    onehot = F.one_hot(targets, cos.shape[1]).to(cos.dtype)
    return F.cross_entropy(s * (cos - m * onehot), targets)


def default_topk(q):
    return min(max(int(0.0002 * q), 3), 10)


class Pool:
    """The Dynamic Class Pool as centers.Pool keeps it: rows[2][Q][D]
    (random unit vectors at start), an LRU label→slot map, a pos bit per
    slot and the slots refreshed in the current pass. Inserts write rows in
    batch order; a journal restores the exact state (Rollback)."""

    def __init__(self, q, d, gen):
        self.q, self.d = q, d
        self.rows = F.normalize(torch.randn(2, q, d, generator=gen), dim=2)
        self.flat = self.rows.view(2 * q, d)
        self.lru = OrderedDict()  # label → slot, least recent first
        self.free = list(range(q - 1, -1, -1))
        self.pos = [0] * q
        self.refreshed = OrderedDict()  # slot → True, this pass

    def begin_pass(self):
        self.refreshed = OrderedDict()

    def insert(self, g, labels, journal=False):
        undo = None
        if journal:
            undo = (OrderedDict(self.lru), list(self.free), list(self.pos), OrderedDict(self.refreshed))
        writes = {}  # flat row → source row; the last write of a row wins
        for i, label in enumerate(labels):
            slot = self.lru.get(label)
            if slot is not None:
                self.lru.move_to_end(label)
                row = self.pos[slot]
                self.pos[slot] ^= 1
                self.refreshed[slot] = True
            else:
                if self.free:
                    slot = self.free.pop()
                else:
                    _, slot = self.lru.popitem(last=False)
                self.lru[label] = slot
                row, self.pos[slot] = 0, 1
            writes[row * self.q + slot] = i
        idx = torch.tensor(list(writes.keys()), dtype=torch.long)
        src = torch.tensor(list(writes.values()), dtype=torch.long)
        saved = self.flat.index_select(0, idx) if journal else None
        self.flat.index_copy_(0, idx, g.index_select(0, src))
        return (undo, idx, saved) if journal else None

    def rollback(self, mark):
        (self.lru, self.free, self.pos, self.refreshed), idx, saved = mark
        self.flat.index_copy_(0, idx, saved)

    def targets(self, labels):
        """Slots of labels (−1: fresh), without touching the recency."""
        return [self.lru.get(label, -1) for label in labels]

    def second_set(self):
        """W: pool[1] rows for the slots refreshed in this pass, else
        pool[0]; None when nothing was refreshed (W = pool[0])."""
        if not self.refreshed:
            return None
        ids = torch.tensor(list(self.refreshed.keys()), dtype=torch.long)
        return self.rows[0].index_copy(0, ids, self.rows[1].index_select(0, ids))


def ffc_loss(p, pool, labels, k):
    """margin(cos1) + margin(cos2) as centers.FFC.Loss: CosFace CE over the
    Q slots for held rows, mean(clip(topK(cos), 0)) for fresh rows; when no
    slot was refreshed the second set equals the first (counted twice)."""
    t = pool.targets(labels)
    held = [i for i, s in enumerate(t) if s >= 0]
    fresh = [i for i, s in enumerate(t) if s < 0]
    held_i = torch.tensor(held, dtype=torch.long)
    fresh_i = torch.tensor(fresh, dtype=torch.long)
    held_t = torch.tensor([t[i] for i in held], dtype=torch.long)

    def one_set(w):
        cos = p.matmul(w.t())
        loss = p.new_zeros(())
        if held:
            loss = loss + cosface_ce(cos.index_select(0, held_i), held_t)
        if fresh:
            loss = loss + cos.index_select(0, fresh_i).topk(k, dim=1).values.clamp(min=0).mean()
        return loss

    first = one_set(pool.rows[0])
    w2 = pool.second_set()
    if w2 is None:
        return 2 * first, len(held), len(fresh)
    return first + one_set(w2), len(held), len(fresh)


# ------------------------------------------------------------------- steps


class FFCStep:
    def __init__(self, a, gen):
        self.a = a
        self.probe = IRResNet(a.dim, a.init)
        self.gallery = copy.deepcopy(self.probe)
        for p in self.gallery.parameters():
            p.requires_grad_(False)
        self.probe.train()
        self.gallery.train()  # the reference runs the gallery in train mode
        self.opt = make_sgd(*param_groups([self.probe]), a.lr, a.weight_decay)
        self.pool = Pool(a.pool, a.dim, gen)
        self.k = default_topk(a.pool)
        self.step_n = 0
        self.half = (a.batch + 1) // 2
        self.rows = a.batch + self.half  # [a; h] per pass
        self.images_per_step = 2 * self.rows

    def inputs(self, rng):
        a = self.a
        ids = [rng.randrange(a.classes) for _ in range(a.batch)]
        inst = [rng.randrange(a.classes) for _ in range(2 * self.half)]
        xl, yl = ids + inst[:self.half], ids + inst[self.half:]
        x = torch.rand(self.rows, IN_CH, IN_SIZE, IN_SIZE) * 2 - 1
        y = torch.rand(self.rows, IN_CH, IN_SIZE, IN_SIZE) * 2 - 1
        return x, xl, y, yl

    def probe_pass(self, z, labels):
        p = self.probe(z)
        loss, _, _ = ffc_loss(p, self.pool, labels, self.k)
        loss.backward()
        return loss.item()

    def __call__(self, x, xl, y, yl):
        if self.step_n > 0:
            with torch.no_grad():
                for g, p in zip(self.gallery.parameters(), self.probe.parameters()):
                    g.mul_(EMA).add_(p, alpha=1 - EMA)
        self.opt.zero_grad()
        # L2: gallery(y) inserted temporarily, probe(x), then rolled back.
        with torch.no_grad():
            g = self.gallery(y)
        self.pool.begin_pass()
        mark = self.pool.insert(g, yl, journal=True)
        l2 = self.probe_pass(x, xl)
        self.pool.rollback(mark)
        # L1: gallery(x) inserted for good, probe(y).
        with torch.no_grad():
            g = self.gallery(x)
        self.pool.begin_pass()
        self.pool.insert(g, xl)
        l1 = self.probe_pass(y, yl)
        self.opt.step()
        self.step_n += 1
        return l1 + l2


class FCStep:
    def __init__(self, a, gen):
        self.a = a
        self.probe = IRResNet(a.dim, a.init)
        self.probe.train()
        self.w = nn.Parameter(torch.randn(a.classes, a.dim, generator=gen) * 0.01)
        decay, rest = param_groups([self.probe])
        self.opt = make_sgd(decay + [self.w], rest, a.lr, a.weight_decay)
        self.images_per_step = a.batch

    def inputs(self, rng):
        a = self.a
        labels = torch.tensor([rng.randrange(a.classes) for _ in range(a.batch)], dtype=torch.long)
        return torch.rand(a.batch, IN_CH, IN_SIZE, IN_SIZE) * 2 - 1, labels

    def __call__(self, x, labels):
        self.opt.zero_grad()
        p = self.probe(x)
        cos = F.linear(p, F.normalize(self.w, dim=1, eps=1e-12))
        loss = cosface_ce(cos, labels)
        loss.backward()
        self.opt.step()
        return loss.item()


def cpu_seconds():
    return time.process_time()


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def describe(a):
    return {
        "impl": "pytorch", "mode": a.mode, "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "python": "%d.%d.%d" % sys.version_info[:3],
    }


def run_steps(a):
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    rng = random.Random(a.seed)
    step = FFCStep(a, gen) if a.mode == "ffc" else FCStep(a, gen)
    times, cpu, loss = [], 0.0, 0.0
    for i in range(a.warmup + a.steps):
        batch = step.inputs(rng)  # outside the timed region
        c0, t0 = cpu_seconds(), time.perf_counter()
        loss = step(*batch)
        t1, c1 = time.perf_counter(), cpu_seconds()
        if i >= a.warmup:
            times.append((t1 - t0) * 1e3)
            cpu += c1 - c0
    if loss != loss or loss in (float("inf"), float("-inf")):
        raise SystemExit("torchref: non-finite loss %r" % loss)
    med = statistics.median(times)
    out = describe(a)
    out.update({
        "batch": a.batch, "dim": a.dim, "pool": a.pool if a.mode == "ffc" else 0, "classes": a.classes,
        "steps": a.steps, "warmup": a.warmup, "images_per_step": step.images_per_step,
        "step_ms": med, "steps_ms": times, "images_per_s": step.images_per_step / (med / 1e3),
        "cpu_seconds": cpu, "peak_rss_bytes": peak_rss_bytes(), "loss": loss,
    })
    return out


def run_sgemm(a):
    s = a.sgemm_size
    gen = torch.Generator().manual_seed(a.seed)
    x, y = torch.randn(s, s, generator=gen), torch.randn(s, s, generator=gen)
    torch.mm(x, y)  # warm up
    best = float("inf")
    for _ in range(max(a.sgemm_reps, 1)):
        t0 = time.perf_counter()
        torch.mm(x, y)
        best = min(best, time.perf_counter() - t0)
    out = describe(a)
    out.update({"size": s, "reps": a.sgemm_reps, "gflops": 2 * s ** 3 / best / 1e9, "peak_rss_bytes": peak_rss_bytes()})
    return out


# ------------------------------------------------------------------ parity


def read_params(path):
    """A trainers/nn parameter file: "FFCNNPRM", version 1, count, then
    count × (name, shape), then the float32 values, then a CRC-32C (its
    size is checked, not its value)."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"FFCNNPRM":
        raise SystemExit("torchref: %s is not a parameter file" % path)
    version, count = struct.unpack_from("<II", b, 8)
    if version != 1:
        raise SystemExit("torchref: %s: parameter file version %d, want 1" % (path, version))
    off, heads = 16, []
    for _ in range(count):
        (n,) = struct.unpack_from("<H", b, off)
        name = b[off + 2:off + 2 + n].decode()
        off += 2 + n
        nd = b[off]
        shape = struct.unpack_from("<%dI" % nd, b, off + 1)
        off += 1 + 4 * nd
        heads.append((name, shape))
    out = OrderedDict()
    for name, shape in heads:
        numel = 1
        for d in shape:
            numel *= d
        out[name] = torch.frombuffer(bytearray(b[off:off + 4 * numel]), dtype=torch.float32).reshape(shape)
        off += 4 * numel
    if off + 4 != len(b):
        raise SystemExit("torchref: %s: %d bytes, the header says %d" % (path, len(b), off + 4))
    return out


def dump_forward(a):
    params = read_params(a.weights)
    model = IRResNet(a.dim, a.init)
    sd = model.state_dict()
    ours = {k for k in sd if not k.endswith(".num_batches_tracked")}
    if ours != set(params):
        raise SystemExit("torchref: tensor names differ: only in the file %s; only in the module %s"
                         % (sorted(set(params) - ours), sorted(ours - set(params))))
    with torch.no_grad():
        for name, v in params.items():
            if tuple(sd[name].shape) != tuple(v.shape):
                raise SystemExit("torchref: %s is %s in the file, %s in the module" % (name, tuple(v.shape), tuple(sd[name].shape)))
            sd[name].copy_(v)
    with open(a.input, "rb") as f:
        raw = f.read()
    per = IN_CH * IN_SIZE * IN_SIZE
    if len(raw) % (4 * per):
        raise SystemExit("torchref: %s: %d bytes is not a whole number of %d-float inputs" % (a.input, len(raw), per))
    x = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(-1, IN_CH, IN_SIZE, IN_SIZE)
    with torch.no_grad():
        model.eval()
        ev = model(x)
        model.train()
        tr = model(x)
    with open(a.dump_forward, "wb") as f:
        f.write(torch.cat([ev, tr]).contiguous().numpy().tobytes())
    out = describe(a)
    out.update({"mode": "dump-forward", "rows": x.shape[0], "dim": ev.shape[1], "tensors": len(params)})
    return out


# ------------------------------------------------------------------- train


def read_floats(path, dtype, size):
    return torch.from_file(path, shared=False, size=size, dtype=dtype)


def train_fc(a):
    """Full-FC training on the driver's train split (see --mode train)."""
    per = IN_CH * IN_SIZE * IN_SIZE
    n = os.path.getsize(a.inputs) // (4 * per)
    if n * 4 * per != os.path.getsize(a.inputs) or os.path.getsize(a.labels) != 4 * n or n < a.batch:
        raise SystemExit("torchref: %s and %s do not hold the same whole number (≥ batch) of images" % (a.inputs, a.labels))
    x_all = read_floats(a.inputs, torch.float32, n * per).view(n, IN_CH, IN_SIZE, IN_SIZE)
    y_all = read_floats(a.labels, torch.int32, n).long()
    lrs = read_floats(a.lrs, torch.float64, os.path.getsize(a.lrs) // 8).tolist()
    if len(lrs) != a.steps:
        raise SystemExit("torchref: %s has %d rates for %d steps" % (a.lrs, len(lrs), a.steps))
    if int(y_all.min()) < 0 or int(y_all.max()) >= a.classes:
        raise SystemExit("torchref: labels outside 0 … %d" % (a.classes - 1))
    with open(a.tensors) as f:
        tensors = json.load(f)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    probe = IRResNet(a.dim, a.init)
    sd = probe.state_dict()
    for name, shape in tensors:
        if name not in sd or tuple(sd[name].shape) != tuple(shape):
            raise SystemExit("torchref: our tensor %s %s is not in the module as such" % (name, shape))
    probe.train()
    w = nn.Parameter(torch.randn(a.classes, a.dim, generator=gen) * 0.01)
    if a.wd_scope == "all":
        decay, rest = list(probe.parameters()) + [w], []
    else:
        decay, rest = param_groups([probe])
        decay.append(w)
    opt = make_sgd(decay, rest, lrs[0], a.weight_decay, a.momentum)
    order = torch.randperm(n, generator=gen)
    at, t0, losses = 0, time.perf_counter(), []
    for step in range(a.steps):
        if at + a.batch > n:  # a fresh epoch: what is left, then a new order
            idx = order[at:]
            order, at = torch.randperm(n, generator=gen), a.batch - len(idx)
            idx = torch.cat([idx, order[:at]])
        else:
            idx, at = order[at:at + a.batch], at + a.batch
        for g in opt.param_groups:
            g["lr"] = lrs[step]
        opt.zero_grad()
        p = probe(x_all.index_select(0, idx))
        loss = cosface_ce(F.linear(p, F.normalize(w, dim=1, eps=1e-12)), y_all.index_select(0, idx), a.scale, a.margin)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] != losses[-1]:
            raise SystemExit("torchref: non-finite loss at step %d" % step)
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            el = time.perf_counter() - t0
            recent = losses[-a.log_every:]
            print(json.dumps({"step": step + 1, "steps": a.steps, "loss": sum(recent) / len(recent), "lr": lrs[step],
                              "images_per_s": (step + 1) * a.batch / el}), file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    sd = probe.state_dict()
    with open(a.params_out, "wb") as f:
        for name, _ in tensors:
            f.write(sd[name].detach().contiguous().numpy().astype("<f4").tobytes())
    out = describe(a)
    tenth = max(1, len(losses) // 10)
    out.update({"steps": a.steps, "batch": a.batch, "classes": a.classes, "images": n, "elapsed_s": elapsed,
                "images_per_s": a.steps * a.batch / elapsed, "first_loss": sum(losses[:tenth]) / tenth,
                "last_loss": sum(losses[-tenth:]) / tenth, "curve": losses, "peak_rss_bytes": peak_rss_bytes()})
    return out


def main(a):
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    if a.mode == "train":
        out = train_fc(a)
    elif a.dump_forward:
        out = dump_forward(a)
    elif a.mode == "sgemm":
        out = run_sgemm(a)
    else:
        out = run_steps(a)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(ARGS)
