"""Each stage's time against this machine's roofline; prints Markdown.

One run measures, on the machine at hand, what its memory and matrix units can do —

- **bandwidth**: copy (``b ← a``), add (``c ← a + b``) and sum (``Σ a``) over arrays far larger than
  the caches, in bytes per second (bytes read plus bytes written), one thread and all threads;
- **matrix products**: a square ``n × n`` float32, bfloat16 and float64 product, in FLOP/s
  (``2n³`` per product), one thread and all threads —

then, for each stage, the bytes and FLOPs it must move (:func:`head_step_cost`,
:func:`probe_cost`, :func:`whisper_forward_cost`, :func:`attack_step_cost`: computed from the
shapes, documented where they are written) and its measured time, eager float32 beside the new
path in the same run:

- **heads step** (one thread): one optimiser step of the emotion head on a batch of 64 clips of
  Whisper-tiny-shaped float16 features held in RAM, as :class:`~trustser.heads.estimator.
  HeadClassifier` trains: the batch fed, forward, backward, AdamW. Paths: ``fp32`` (the
  reference eager step), ``bf16 eager`` (``precision="bf16", compile=False``) and ``bf16
  compiled`` (``precision="bf16"``: the layer mix read from the stored rows by the compiled
  kernels). The issue's goal is ``fp32`` ÷ ``bf16 compiled`` ≥ 2.5 on a CPU with bfloat16 units;
- **heads fit** (one thread): the same estimator's whole ``fit`` (6 epochs of 4 batches, no
  dev data), per step: feature statistics, head set-up and epoch bookkeeping included, so a
  short fit shows less of the step's gain than a long one;
- **probe fit**: the linear probe of ``trustser heads probe`` (scikit-learn's lbfgs logistic
  regression on all-layer time-means, float64; no other path);
- **extraction forward**: the Whisper encoder on a batch of 6 s clips (trimmed window), as
  ``trustser extract`` runs it; beside float32, bfloat16 autocast as a *candidate* (measured
  here only: extraction does not offer it);
- **FGSM/PGD step**: one loss gradient with respect to the waveform through encoder and head
  (``trustser.attacks.functional.loss_gradient``, the step both attacks repeat); bfloat16
  autocast again only a candidate.

Extraction and the attack step use Whisper tiny's exact architecture with random weights
(cost does not depend on weight values; nothing is downloaded) unless ``--backbone`` names
another Whisper backbone, e.g. ``whisper_tiny_en_offline`` (real weights, installed offline).

Columns of the stage table:

- ``FLOPs``, ``bytes``: what the stage must compute and move at least (the cost functions);
- ``time``: the fastest of ``--repeats`` timed calls after a warm-up (contention on a shared
  machine only adds time);
- ``limit``: the roofline limit ``max(bytes / B, FLOPs / P)``, with ``B`` the best measured
  bandwidth and ``P`` the measured matrix-product rate of the path's precision, both at the
  stage's thread count;
- ``of roofline``: ``limit / time``, the fraction of the machine's limit the stage reaches
  (100 % = at the limit; the bytes and FLOPs are lower bounds, so the fraction is an upper
  bound on efficiency);
- ``vs fp32``: the float32 row's time over this row's.

The machine's load average is printed at the start and the end: timings on a busy machine are
not comparable with a quiet one's. Default run: about a minute or two on a CPU.

    .venv/bin/python bench/roofline.py [--backbone whisper_tiny_en_offline] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

# Weights come from local files only: no retries against unreachable hubs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _timing import fastest

from trustser.backbones import build_random_backbone, load_backbone
from trustser.heads.data import FeatureSet, PackedFeatures
from trustser.heads.estimator import HeadClassifier, head_optimizer, stored_logits
from trustser.heads.mixing import compiled_mixer
from trustser.heads.model import LayerWeightedHead
from trustser.heads.precision import fast_bf16

GIGA = 1e9
BATCH = 64  # clips per head batch (the paper's)
FRAME_RATE = 50  # encoder frames per second (Whisper, wav2vec2)
SAMPLE_RATE = 16_000


# ----------------------------------------------------------------------------- the costs
@dataclass(frozen=True)
class Cost:
    """What a stage must compute (FLOPs, multiply and add counted apart) and move (bytes)."""

    flops: float
    bytes: float


def head_step_cost(
    frames: int, layers: int, dim: int, *, hidden: int, classes: int, clips: int, stored: int
) -> Cost:
    """One training step of the layer-weighted head on ``frames`` packed frames of ``clips``.

    FLOPs — forward: the layer mix ``2·L·F·D``, the two k=1 convolutions ``2·F·D·H + 2·F·H²``,
    the classifier ``2·B·(H² + H·C)``; backward: the layer weights' gradient ``2·L·F·D``, both
    weight and input gradients of each convolution and classifier layer (twice their forward;
    the first convolution's input gradient is needed for the layer weights). Total
    ``4·L·F·D + 6·F·D·H + 6·F·H² + 6·B·(H² + H·C)``.

    Bytes — the stored features read once per direction ``2·F·L·D·s`` (``s`` bytes per stored
    value), the mixed frames written and read ``2·F·D·4`` and the two activations written
    forward and read backward ``4·F·H·4``; weights and optimiser state are small.
    """
    mix = 2 * layers * frames * dim
    flops = 2 * mix + 6 * frames * dim * hidden + 6 * frames * hidden**2
    flops += 6 * clips * (hidden**2 + hidden * classes)
    moved = 2 * frames * layers * dim * stored + 2 * frames * dim * 4 + 4 * frames * hidden * 4
    return Cost(float(flops), float(moved))


def probe_cost(samples: int, features: int, classes: int, *, iterations: int) -> Cost:
    """An lbfgs logistic regression: per iteration the logits ``X·W`` and the gradient
    ``Xᵀ·(P − Y)``, ``4·N·K·C`` FLOPs, reading ``X`` (float64) twice, ``2·N·K·8`` bytes
    (line-search evaluations beyond one per iteration are not counted)."""
    return Cost(
        float(4 * samples * features * classes * iterations),
        float(2 * samples * features * 8 * iterations),
    )


def _whisper_parts(
    seconds: float, *, dim: int, blocks: int, mels: int = 80
) -> tuple[float, float, int]:
    """(linear FLOPs, attention FLOPs, encoder frames) of one clip through a Whisper encoder on
    the trimmed window: ``T_mel = 100·s`` log-mel frames, ``T = T_mel / 2`` encoder frames,
    feed-forward width ``4·D``. Convolutions: ``2·T_mel·3·M·D + 2·T·3·D²``; per block the
    four attention projections and the feed-forward ``2·T·(4·D² + 2·D·4D)``, attention
    itself ``2·2·T²·D`` (scores and weighted sum). The log-mel is not counted."""
    mel = round(100 * seconds)
    frames = mel // 2
    linear = 2 * mel * 3 * mels * dim + 2 * frames * 3 * dim * dim
    linear += blocks * 2 * frames * (4 * dim * dim + 2 * dim * 4 * dim)
    attention = blocks * 4 * frames * frames * dim
    return float(linear), float(attention), frames


def whisper_forward_cost(
    seconds: float, clips: int, *, dim: int, layers: int, parameters: int
) -> Cost:
    """The encoder forward on ``clips`` clips of ``seconds`` (``layers`` hidden states: the
    embedding output and ``layers − 1`` blocks). Bytes: the weights read once, the waveforms in
    and every hidden state out (float32), ``4·(P + clips·(S + L·T·D))``."""
    linear, attention, frames = _whisper_parts(seconds, dim=dim, blocks=layers - 1)
    samples = int(seconds * SAMPLE_RATE)
    moved = 4 * (parameters + clips * (samples + layers * frames * dim))
    return Cost(clips * (linear + attention), float(moved))


def attack_step_cost(
    seconds: float, clips: int, *, dim: int, layers: int, parameters: int, hidden: int = 128
) -> Cost:
    """One loss gradient with respect to the waveform (FGSM, or one PGD iteration): the forward
    and the backward to the input only (frozen weights: no weight gradients), so every linear
    and convolution costs twice its forward and attention three times (both operands of each
    product get a gradient); the head likewise twice. Bytes: the weights read forward and
    backward, the waveform in and its gradient out, ``4·(2·P + 2·clips·S)``."""
    linear, attention, frames = _whisper_parts(seconds, dim=dim, blocks=layers - 1)
    head = 2 * layers * frames * dim + 2 * frames * (dim * hidden + hidden * hidden)
    samples = int(seconds * SAMPLE_RATE)
    return Cost(
        clips * (2 * linear + 3 * attention + 2 * head),
        float(4 * (2 * parameters + 2 * clips * samples)),
    )


# ------------------------------------------------------------------------ the ceilings
@dataclass
class Ceilings:
    """Measured bandwidth (bytes/s) and matrix-product rates (FLOP/s) by thread count."""

    bandwidth: dict[int, dict[str, float]]
    matmul: dict[int, dict[str, float]]

    def limit(self, cost: Cost, *, threads: int, precision: str) -> float:
        """Seconds at the roofline: ``max(bytes / B, FLOPs / P)``."""
        best_bandwidth = max(self.bandwidth[threads].values())
        return max(cost.bytes / best_bandwidth, cost.flops / self.matmul[threads][precision])


def _threads(count: int) -> Callable[[Callable[[], object]], Callable[[], object]]:
    def wrap(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            previous = torch.get_num_threads()
            torch.set_num_threads(count)
            try:
                return fn()
            finally:
                torch.set_num_threads(previous)

        return run

    return wrap


def measure_ceilings(
    thread_counts: list[int], *, elements: int, size: int, repeats: int
) -> Ceilings:
    """Bandwidth over ``elements`` float32 values per array; ``size × size`` matrix products."""
    a, b, c = (torch.rand(elements) for _ in range(3))
    bandwidth: dict[int, dict[str, float]] = {}
    matmul: dict[int, dict[str, float]] = {}
    nbytes = elements * 4
    matrices = {
        dtype: (torch.rand(size, size, dtype=dtype), torch.rand(size, size, dtype=dtype))
        for dtype in (torch.float32, torch.bfloat16, torch.float64)
    }
    outputs = {dtype: torch.empty(size, size, dtype=dtype) for dtype in matrices}
    for count in thread_counts:
        on = _threads(count)
        bandwidth[count] = {
            "copy": 2 * nbytes / fastest(on(lambda: b.copy_(a)), repeats),
            "add": 3 * nbytes / fastest(on(lambda: torch.add(a, b, out=c)), repeats),
            "sum": nbytes / fastest(on(lambda: a.sum()), repeats),
        }
        matmul[count] = {}
        for dtype, name in (
            (torch.float32, "fp32"),
            (torch.bfloat16, "bf16"),
            (torch.float64, "fp64"),
        ):
            x, y = matrices[dtype]
            seconds = fastest(on(lambda x=x, y=y, o=outputs[dtype]: torch.mm(x, y, out=o)), repeats)
            matmul[count][name] = 2 * size**3 / seconds
    return Ceilings(bandwidth, matmul)


# ----------------------------------------------------------------------------- the stages
@dataclass
class Row:
    stage: str
    threads: int
    shape: str
    cost: Cost
    path: str
    precision: str  # which matrix-product rate bounds it
    seconds: float | None  # None: the path does not exist for this stage


def synthetic_features(clips: int, *, layers: int, dim: int, seed: int) -> tuple[FeatureSet, int]:
    """``clips`` clips of float16 features (1.5–6 s at 50 frames/s, like EmoDB's four-class
    clips cut at 6 s) with four planted classes; and the total frame count."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(int(1.5 * FRAME_RATE), 6 * FRAME_RATE + 1, size=clips)
    labels = [("angry", "happy", "neutral", "sad")[i % 4] for i in range(clips)]
    rows = rng.standard_normal((int(lengths.sum()), layers, dim), dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i, label in enumerate(labels):
        rows[offsets[i] : offsets[i + 1]] += 0.3 * ("angry", "happy", "neutral", "sad").index(label)
    ids = [f"clip{i:04d}" for i in range(clips)]
    packed = PackedFeatures.from_rows(ids, torch.from_numpy(rows.astype(np.float16)), offsets)
    return FeatureSet(packed, ids, labels), int(lengths.sum())


def heads_rows(repeats: int, *, layers: int, dim: int, seed: int) -> list[Row]:
    """The heads step and the heads fit, one thread, every path."""
    data, total_frames = synthetic_features(4 * BATCH, layers=layers, dim=dim, seed=seed)
    source: PackedFeatures = data.source
    statistics = source.statistics(data.ids)
    standardized = source.standardized(*statistics)
    batch_ids = data.ids[:BATCH]
    frames = int(source.num_frames(batch_ids).sum())
    cost = head_step_cost(
        frames, layers, dim, hidden=128, classes=4, clips=BATCH, stored=source.rows.element_size()
    )
    targets = torch.tensor([i % 4 for i in range(BATCH)])
    on_one = _threads(1)
    rows = []
    for path, precision in (
        ("fp32 eager", "fp32"),
        ("bf16 eager", "bf16"),
        ("bf16 compiled", "bf16"),
    ):
        torch.manual_seed(seed)
        head = LayerWeightedHead(layers, dim, 4, normalize=True)
        head.set_normalization(*statistics)
        optimizer = head_optimizer(head, lr=5e-4, layer_lr=None, weight_decay=0.0)
        loss_fn = torch.nn.CrossEntropyLoss()
        mixer = None
        if path == "bf16 compiled":
            mixer = on_one(
                lambda: compiled_mixer(
                    source.rows, source.scales, torch.device("cpu"), indexed=True
                )
            )()
        dtype = torch.bfloat16 if precision == "bf16" else None

        def step(head=head, optimizer=optimizer, loss_fn=loss_fn, mixer=mixer, dtype=dtype) -> None:
            # as trustser.heads.estimator._HeadTraining.step: feed, forward, backward, AdamW
            if mixer is not None:
                (batch,) = source.frame_batches(batch_ids, batch_size=BATCH, shuffle=False)
                logits = stored_logits(head, source, batch, torch.device("cpu"), mixer)
            else:
                (batch,) = standardized.packed_batches(
                    batch_ids, batch_size=BATCH, shuffle=False, reuse=True
                )
                logits = head.forward_packed(
                    batch.frames, batch.segments, BATCH, standardized=True, compute_dtype=dtype
                )
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        on_one(step)()  # warm-up
        seconds = fastest(on_one(step), repeats)
        rows.append(
            Row(
                "heads step",
                1,
                f"B {BATCH}, F {frames}, L {layers}, D {dim}, H 128, float16 store",
                cost,
                path,
                precision,
                seconds,
            )
        )

    epochs = 6
    steps = epochs * -(-len(data) // BATCH)
    fit_cost = head_step_cost(
        total_frames * epochs,
        layers,
        dim,
        hidden=128,
        classes=4,
        clips=len(data) * epochs,
        stored=source.rows.element_size(),
    )
    for path, settings in (
        ("fp32 eager", {"precision": "fp32"}),
        ("bf16 eager", {"precision": "bf16", "compile": False}),
        ("bf16 compiled", {"precision": "bf16"}),
    ):
        estimator = HeadClassifier(epochs=epochs, device="cpu", seed=seed, **settings)
        fit = on_one(lambda estimator=estimator: estimator.fit(data))
        fit()  # warm-up (compiles once for the compiled path)
        seconds = fastest(fit, 2)
        rows.append(
            Row(
                "heads fit (per step)",
                1,
                f"{len(data)} clips, {epochs} epochs, {steps} steps",
                Cost(fit_cost.flops / steps, fit_cost.bytes / steps),
                path,
                "bf16" if settings["precision"] == "bf16" else "fp32",
                seconds / steps,
            )
        )
    return rows


def probe_row(repeats: int, *, layers: int, dim: int, seed: int) -> Row:
    """The all-layers linear probe on EmoDB-sized time-means (scikit-learn, float64)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    samples, features, classes = 339, layers * dim, 4
    labels = np.arange(samples) % classes
    x = rng.standard_normal((samples, features)) + 0.05 * labels[:, None]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = fastest(lambda: model.fit(x, labels), repeats)
    iterations = int(np.max(model[-1].n_iter_))
    cost = probe_cost(samples, features, classes, iterations=iterations)
    shape = f"N {samples}, K {features}, C {classes}, {iterations} lbfgs iterations"
    return Row(
        "probe fit", torch.get_num_threads(), shape, cost, "fp32 eager (float64)", "fp64", seconds
    )


def backbone_rows(
    name: str | None, repeats: int, *, clips: int, seconds: float, seed: int
) -> list[Row]:
    """Extraction forward and one attack step, float32 and bfloat16 autocast (candidate)."""
    from trustser.attacks.functional import loss_gradient
    from trustser.end_to_end import EndToEndClassifier

    if name is None:
        backbone, label = (
            build_random_backbone("whisper_tiny", device="cpu"),
            "whisper_tiny (random weights)",
        )
    else:
        backbone, label = load_backbone(name, device="cpu"), name
    if backbone.spec.family != "whisper":
        raise SystemExit(
            f"--backbone must be a Whisper backbone (the cost functions are Whisper's), got {name!r}."
        )
    layers, dim = backbone.num_layers, backbone.dim
    parameters = sum(p.numel() for p in backbone.parameters())
    samples = int(seconds * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(seed)
    waves = 0.1 * torch.randn(clips, samples, generator=generator)
    lengths = torch.full((clips,), samples)
    torch.manual_seed(seed)
    head = LayerWeightedHead(layers, dim, 4).eval()
    model = EndToEndClassifier(backbone, head)
    mask = torch.ones(clips, samples, dtype=torch.bool)
    labels = torch.zeros(clips, dtype=torch.long)
    threads = torch.get_num_threads()
    shape = f"{label}, {clips} × {seconds:g} s, L {layers}, D {dim}"
    forward = whisper_forward_cost(seconds, clips, dim=dim, layers=layers, parameters=parameters)
    step = attack_step_cost(seconds, clips, dim=dim, layers=layers, parameters=parameters)
    rows = []
    for path, precision, enabled in (
        ("fp32 eager", "fp32", False),
        ("bf16 autocast (candidate)", "bf16", True),
    ):

        def extract(enabled=enabled) -> None:
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled),
            ):
                backbone(waves, lengths)

        def attack(enabled=enabled) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                loss_gradient(model, waves, labels=labels, mask=mask)

        for stage, cost, fn in (
            ("extraction forward", forward, extract),
            ("FGSM/PGD step", step, attack),
        ):
            fn()  # warm-up
            rows.append(Row(stage, threads, shape, cost, path, precision, fastest(fn, repeats)))
    return sorted(rows, key=lambda r: r.stage != "extraction forward")


# ---------------------------------------------------------------------------- rendering
def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def render(ceilings: Ceilings, rows: list[Row], header: list[str]) -> str:
    out = ["# Roofline: each stage against this machine's limits", "", *header, ""]
    counts = sorted(ceilings.bandwidth)
    out += ["## Measured ceilings", ""]
    out.append(
        "| measure | " + " | ".join(f"{c} thread{'s' if c > 1 else ''}" for c in counts) + " |"
    )
    out.append("|---|" + "---:|" * len(counts))
    for kind in ("copy", "add", "sum"):
        out.append(
            f"| {kind} bandwidth | "
            + " | ".join(_si(ceilings.bandwidth[c][kind], "B/s") for c in counts)
            + " |"
        )
    for kind in ("fp32", "bf16", "fp64"):
        out.append(
            f"| {kind} matrix product | "
            + " | ".join(_si(ceilings.matmul[c][kind], "FLOP/s") for c in counts)
            + " |"
        )
    out += ["", "## Stages", ""]
    out.append(
        "| stage | threads | shape | FLOPs | bytes | path | time | limit | of roofline | vs fp32 |"
    )
    out.append("|---|---:|---|---:|---:|---|---:|---:|---:|---:|")
    reference: dict[str, float] = {}
    for row in rows:
        limit = ceilings.limit(row.cost, threads=row.threads, precision=row.precision)
        if row.path.startswith("fp32"):
            reference[row.stage] = row.seconds
        speed = reference.get(row.stage)
        out.append(
            f"| {row.stage} | {row.threads} | {row.shape} | {_si(row.cost.flops, 'FLOP')} | "
            f"{_si(row.cost.bytes, 'B')} | {row.path} | {_ms(row.seconds)} | {_ms(limit)} | "
            f"{100 * limit / row.seconds:.0f} % | "
            f"{'—' if speed is None or row.path.startswith('fp32') else f'{speed / row.seconds:.2f}×'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone",
        default=None,
        help="a Whisper backbone (default: whisper_tiny's architecture, random weights)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per measurement (the fastest counts)"
    )
    parser.add_argument("--clips", type=int, default=4, help="clips per extraction / attack batch")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="clip length for extraction and attacks"
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=5,
        help="hidden states of the heads' features (Whisper tiny: 5)",
    )
    parser.add_argument(
        "--dim", type=int, default=384, help="width of the heads' features (Whisper tiny: 384)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    load = os.getloadavg()
    everything = torch.get_num_threads()
    counts = sorted({1, everything})
    ceilings = measure_ceilings(counts, elements=32 * 2**20, size=2048, repeats=args.repeats)
    rows = heads_rows(args.repeats, layers=args.layers, dim=args.dim, seed=args.seed)
    rows.append(probe_row(args.repeats, layers=args.layers, dim=args.dim, seed=args.seed))
    rows += backbone_rows(
        args.backbone, args.repeats, clips=args.clips, seconds=args.seconds, seed=args.seed
    )
    cpu = platform.processor() or platform.machine()
    header = [
        f"- machine: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), bfloat16 units: "
        f"{'yes' if fast_bf16(torch.device('cpu')) else 'no'}",
        f"- load average (1, 5, 15 min) at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}: a busy machine only adds time",
        f"- run took {time.perf_counter() - start:.0f} s; every time is the fastest of {args.repeats} calls",
    ]
    print(render(ceilings, rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
