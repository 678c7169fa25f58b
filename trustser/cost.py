"""Sustainability: what one backbone + head costs to run on a 6 s clip.

Three kinds of number, each labelled for what it is:

* **parameters** of the backbone and of the head, counted from the loaded modules;
* **MACs** (multiply–accumulates) for one clip, counted by fvcore over a JIT trace of the model
  with *eager* attention, so the attention products (QKᵀ and AV) are ordinary matmuls (with SDPA,
  the default kernel, torch's FlopCounterMode does not count attention on CPU; fvcore sees the
  SDPA call and counts it through a handle added here, but eager is what the cross-check needs).
  fvcore counts one MAC per multiply–add; **FLOPs ≈ 2 × MACs**. torch's ``FlopCounterMode``
  (which counts FLOPs) runs on the same model as a cross-check. The paper's "GFLOPs" came from
  thop and are MACs too. Operators fvcore does not know are counted by handles here:
  ``baddbmm`` (WavLM's attention), ``scaled_dot_product_attention`` and GRU/LSTM (APC);
* **latency** (ms per clip at batch 1, median of timed runs) and **throughput** (clips per second
  at a larger batch) of backbone + head on the current device, with the default attention kernel.

Not counted in MACs (documented, and small): elementwise work (activations, softmax, residual
adds, masking, the head's layer mix when computed elementwise: L·T·D, < 1 % of the head) and the
FFT of log-mel / filterbank front ends (their filterbank matmuls *are* counted). Normalisation
layers are reported separately as ``norm_macs`` (fvcore estimates them; torch's counter ignores
them).
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trustser._validation import TrustSERError, check_positive
from trustser._version import __version__
from trustser.end_to_end import EndToEndClassifier
from trustser.runs import ModelName
from trustser.variants import parse as parse_variant

__all__ = [
    "COST_FORMAT_VERSION",
    "DEFAULT_SECONDS",
    "CostError",
    "CostReport",
    "as_variant_cost",
    "count_macs",
    "count_parameters",
    "count_torch_flops",
    "head_config_from_runs",
    "measure_cost",
    "read_cost",
    "run_cost",
    "time_model",
]

DEFAULT_SECONDS = 6.0
COST_FORMAT_VERSION = 1

# fvcore operator name → reported category (MACs of each are summed per category).
_CATEGORIES = {
    "conv": "conv",
    "linear": "linear",
    "addmm": "linear",
    "mm": "linear",
    "matmul": "matmul",
    "bmm": "matmul",
    "baddbmm": "matmul",
    "einsum": "matmul",
    "scaled_dot_product_attention": "matmul",
    "gru": "rnn",
    "lstm": "rnn",
    "rnn_tanh": "rnn",
    "rnn_relu": "rnn",
}
_MATMUL_OPS = {"matmul", "bmm", "baddbmm", "einsum", "scaled_dot_product_attention"}
_ATTENTION_NAMES = ("attn", "attention")

NOT_COUNTED = [
    "elementwise operations (activations, softmax, residual additions, masking, the head's "
    "elementwise layer mix)",
    "the FFT of log-mel / filterbank front ends (Whisper, APC, TERA; their mel-filterbank matmuls are counted)",
    "normalisation layers are not in the MAC total; fvcore's estimate is listed as 'norm'",
]


class CostError(TrustSERError, ValueError):
    """A cost measurement that cannot be made as asked (bad length, unreadable cost.json)."""


@dataclass(frozen=True)
class CostReport:
    """Parameters, MACs, FLOPs and timings of backbone + head for one clip length."""

    backbone: str
    family: str
    source: str
    window: str | None
    seconds: float
    num_samples: int
    num_frames: int
    num_layers: int
    dim: int
    backbone_params: int
    head_params: int
    head_config: dict[str, Any]
    head_source: str
    backbone_macs: int
    head_macs: int
    attention_macs: int
    macs_by_category: dict[str, int]
    norm_macs: int
    torch_flops: int
    device: str
    torch_threads: int
    latency_ms: float | None
    latency_ms_p90: float | None
    throughput_clips_per_s: float | None
    throughput_batch_size: int
    repeats: int
    counter: str = "fvcore MACs over a JIT trace, eager attention; FLOPs ≈ 2 × MACs"
    not_counted: list[str] = field(default_factory=lambda: list(NOT_COUNTED))
    environment: dict[str, str] = field(default_factory=dict)
    # A variant (``base@tag``, e.g. fine-tuned top blocks) computes exactly what its base does.
    base_backbone: str | None = None
    variant: str | None = None
    basis: str = "measured"
    latency_ms_runs: list[float] = field(default_factory=list)  # every timed batch-1 run (ms)
    # Forward passes per classified clip: N for a randomized-smoothing variant, else 1.
    inference_passes: int = 1

    @property
    def total_params(self) -> int:
        return self.backbone_params + self.head_params

    @property
    def total_macs(self) -> int:
        return self.backbone_macs + self.head_macs

    @property
    def gmacs(self) -> float:
        """Backbone + head GMACs per clip: the sustainability axis of the profile."""
        return self.total_macs / 1e9

    @property
    def real_time_factor(self) -> float | None:
        """Processing time / audio time at batch 1 (below 1 = faster than real time)."""
        return None if self.latency_ms is None else self.latency_ms / 1000.0 / self.seconds

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            format="trustser-cost",
            format_version=COST_FORMAT_VERSION,
            total_params=self.total_params,
            total_macs=self.total_macs,
            gmacs=self.gmacs,
            gflops_approx=2 * self.gmacs,
            real_time_factor=self.real_time_factor,
        )
        return data


def count_parameters(module: nn.Module) -> int:
    """Every parameter element of ``module`` (frozen or not; shared tensors once)."""
    return sum(p.numel() for p in module.parameters())


# --- fvcore handles for operators it does not know -------------------------------------------


def _shape(value: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(value)
    if shape is None:
        raise CostError("fvcore could not see a tensor shape while counting MACs.")
    return list(shape)


def _baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # baddbmm(input, batch1 [b, n, m], batch2 [b, m, p]): the products are b·n·m·p MACs.
    b, n, m = _shape(inputs[1])
    p = _shape(inputs[2])[-1]
    return b * n * m * p


def _sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # softmax(Q Kᵀ) V with Q [..., L, E], K [..., S, E], V [..., S, Ev].
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _rnn_macs(inputs: list[Any], outputs: list[Any]) -> int:
    # aten::gru/lstm, two overloads: .input(input, hx, params, ...) with input [B, T, In] or
    # [T, B, In], and .data(data [ΣT, In], batch_sizes, hx, params, ...) for packed sequences.
    # Every weight matrix multiplies one vector per time step and sequence. The weights are the
    # last list argument (an LSTM's hx is a list too, before them).
    params = max(i for i, v in enumerate(inputs) if v.node().kind() == "prim::ListConstruct")
    shape = _shape(inputs[0])
    steps = shape[0] if params == 3 else math.prod(shape[:-1])
    macs = 0
    for weight in inputs[params].node().inputs():
        dims = _shape(weight)
        if len(dims) == 2:  # biases are 1-D and cost additions only
            macs += dims[0] * dims[1]
    return steps * macs


_EXTRA_HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::baddbmm": _baddbmm_macs,
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::gru": _rnn_macs,
    "aten::lstm": _rnn_macs,
    "aten::rnn_tanh": _rnn_macs,
    "aten::rnn_relu": _rnn_macs,
}


class _FirstOutput(nn.Module):
    """fvcore traces modules returning tensors; backbones return (hidden, frame_lengths)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        output = self.module(*inputs)
        return output[0] if isinstance(output, tuple) else output


def count_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """fvcore MACs of ``module(*inputs)``: total (matmul-like ops), by category, attention, norm.

    ``attention`` is the matmul-like work inside modules whose name contains ``attn`` or
    ``attention`` (QKᵀ and AV; the Q/K/V/output projections count as ``linear``).
    """
    import logging
    import warnings

    with warnings.catch_warnings():  # fvcore's import calls the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    wrapped = _FirstOutput(module).eval()
    with torch.no_grad():  # once outside the tracer, so lazy imports and caches happen here
        wrapped(*inputs)
    analysis = FlopCountAnalysis(wrapped, inputs)
    analysis.set_op_handle(**_EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    by_category: Counter[str] = Counter()
    norm = 0
    for operator, macs in analysis.by_operator().items():
        if operator in _CATEGORIES:
            by_category[_CATEGORIES[operator]] += int(macs)
        else:  # fvcore's norm / upsample estimates: reported, not in the MAC total
            norm += int(macs)
    attention = 0
    for name, per_op in analysis.by_module_and_operator().items():
        leaf = name.rsplit(".", 1)[-1].lower()
        if any(key in leaf for key in _ATTENTION_NAMES):
            parent_attention = any(
                key in part.lower() for part in name.split(".")[:-1] for key in _ATTENTION_NAMES
            )
            if not parent_attention:  # count each attention block once, at its top module
                attention += sum(int(v) for op, v in per_op.items() if op in _MATMUL_OPS)
    return {
        "total": int(sum(by_category.values())),
        "by_category": dict(sorted(by_category.items())),
        "attention": attention,
        "norm": norm,
    }


def count_torch_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of ``module(*inputs)`` by torch's ``FlopCounterMode`` (2 per multiply–add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(
    model: Callable[..., Any],
    inputs: tuple[torch.Tensor, ...],
    *,
    device: torch.device,
    repeats: int,
    warmup: int = 2,
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones (no autograd)."""
    check_positive("repeats", repeats)
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        _synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    return times


def head_config_from_runs(runs: str | Path, backbone: str) -> tuple[dict[str, Any], str] | None:
    """The config of a trained emotion head under ``runs`` (first fold found), with its path."""
    from trustser.runs import RunLayout, read_json

    task_dir = RunLayout(runs).head_dir(backbone, "emotion")
    if not task_dir.is_dir():
        return None
    for sidecar in sorted(task_dir.glob("*/head.json")):
        config = read_json(sidecar).get("config")
        if isinstance(config, dict) and {"num_layers", "dim", "num_classes"} <= set(config):
            return dict(config), str(sidecar)
    return None


def _build_head(
    num_layers: int, dim: int, head_config: dict[str, Any] | None, num_classes: int
) -> tuple[nn.Module, dict[str, Any]]:
    from trustser.heads.model import LayerWeightedHead

    config = dict(head_config or {})
    config.pop("num_layers", None)
    config.pop("dim", None)
    classes = int(config.pop("num_classes", num_classes))
    head = LayerWeightedHead(num_layers, dim, classes, **config)
    return head.eval(), head.config()


@dataclass
class _Counted:
    """What counting on the CPU found for one clip of seeded noise: the clip, the (untrained)
    head, and the fvcore MACs and torch FLOPs of each part."""

    spec: Any
    window: str | None
    num_samples: int
    num_frames: int
    wave: torch.Tensor  # [1, num_samples]
    lengths: torch.Tensor  # [1]
    head: nn.Module
    head_config: dict[str, Any]
    backbone_params: int
    backbone_macs: dict[str, Any]  # count_macs of the backbone
    head_macs: dict[str, Any]  # count_macs of the head
    torch_flops: int  # backbone + head, by FlopCounterMode

    def report_fields(self) -> dict[str, Any]:
        """The :class:`CostReport` fields the counting determines."""
        by_category = Counter(self.backbone_macs["by_category"])
        by_category.update(self.head_macs["by_category"])
        return {
            "backbone": self.spec.name,
            "family": self.spec.family,
            "source": self.spec.source,
            "window": self.window,
            "num_samples": self.num_samples,
            "num_frames": self.num_frames,
            "num_layers": self.head.num_layers,
            "dim": self.head.dim,
            "backbone_params": self.backbone_params,
            "head_params": count_parameters(self.head),
            "head_config": self.head_config,
            "backbone_macs": self.backbone_macs["total"],
            "head_macs": self.head_macs["total"],
            "attention_macs": self.backbone_macs["attention"],
            "macs_by_category": dict(sorted(by_category.items())),
            "norm_macs": self.backbone_macs["norm"] + self.head_macs["norm"],
            "torch_flops": self.torch_flops,
        }


def _count_on_cpu(
    backbone: str,
    *,
    seconds: float,
    window: str,
    head_config: dict[str, Any] | None,
    num_classes: int,
    seed: int,
    say: Callable[[str], None],
) -> _Counted:
    """Load ``backbone`` on the CPU with eager attention (exact, device-independent counts) and
    count it and the head on a ``seconds`` clip; the clip's noise comes from ``seed``."""
    from trustser.backbones import load_backbone

    say(f"loading {backbone} with eager attention for counting")
    counted = load_backbone(backbone, device="cpu", window=window, attn_implementation="eager")
    num_samples = _clip_samples(counted, backbone, seconds)
    num_frames = counted.frame_count(num_samples)
    generator = torch.Generator().manual_seed(seed)
    wave = 0.1 * torch.randn(1, num_samples, generator=generator)
    lengths = torch.tensor([num_samples])
    head, config = _build_head(counted.num_layers, counted.dim, head_config, num_classes)

    say("counting MACs (fvcore) and FLOPs (torch FlopCounterMode)")
    backbone_macs = count_macs(counted, (wave, lengths))
    hidden = torch.randn(1, counted.num_layers, num_frames, counted.dim, generator=generator)
    mask = torch.ones(1, num_frames, dtype=torch.bool)
    head_macs = count_macs(head, (hidden, mask))
    torch_flops = count_torch_flops(EndToEndClassifier(counted, head), (wave, lengths))
    return _Counted(
        spec=counted.spec,
        window=getattr(counted, "window", None),
        num_samples=num_samples,
        num_frames=num_frames,
        wave=wave,
        lengths=lengths,
        head=head,
        head_config=config,
        backbone_params=count_parameters(counted),
        backbone_macs=backbone_macs,
        head_macs=head_macs,
        torch_flops=torch_flops,
    )


def _clip_samples(model: Any, backbone: str, seconds: float) -> int:
    """Samples of a ``seconds`` clip, refused when the encoder does not accept that length."""
    num_samples = round(seconds * model.sample_rate)
    if num_samples < model.min_samples or (
        model.max_samples is not None and num_samples > model.max_samples
    ):
        limit = model.max_samples / model.sample_rate if model.max_samples else math.inf
        raise CostError(
            f"{backbone}: a {seconds} s clip is outside what this encoder accepts "
            f"({model.min_samples / model.sample_rate:.3f} s to {limit:g} s); choose another "
            "--seconds."
        )
    return num_samples


@dataclass
class _Timed:
    """Timings of backbone + head (None when not timed) and torch's CPU threads meanwhile."""

    threads: int
    latency_ms: float | None = None  # median at batch 1
    latency_ms_p90: float | None = None
    runs_ms: list[float] = field(default_factory=list)  # every timed batch-1 run
    throughput: float | None = None  # clips per second at the larger batch

    def report_fields(self) -> dict[str, Any]:
        """The :class:`CostReport` fields the timing determines."""
        return {
            "torch_threads": self.threads,
            "latency_ms": self.latency_ms,
            "latency_ms_p90": self.latency_ms_p90,
            "latency_ms_runs": self.runs_ms,
            "throughput_clips_per_s": self.throughput,
        }


def _time_end_to_end(
    backbone: str,
    counted: _Counted,
    *,
    target: torch.device,
    window: str,
    batch_size: int,
    repeats: int,
    threads: int | None,
    say: Callable[[str], None],
) -> _Timed:
    """Time ``backbone`` (default attention kernel) + the counted head on ``target``: latency
    at batch 1, throughput at ``batch_size``. ``threads`` sets torch's CPU thread count for the
    timed runs only. The head is back on the CPU afterwards."""
    from trustser.backbones import load_backbone

    say(f"timing on {target} (batch 1 and batch {batch_size})")
    previous_threads = torch.get_num_threads()
    timed = load_backbone(backbone, device=target, window=window)
    model = EndToEndClassifier(timed, counted.head.to(target))
    wave, lengths = counted.wave, counted.lengths
    single = (wave.to(target), lengths)
    batch = (wave.repeat(batch_size, 1).to(target), lengths.repeat(batch_size))
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        timed_threads = torch.get_num_threads()
        times = time_model(model, single, device=target, repeats=repeats)
        batch_times = time_model(model, batch, device=target, repeats=max(3, repeats // 4))
    finally:
        torch.set_num_threads(previous_threads)
    counted.head.to("cpu")
    return _Timed(
        threads=timed_threads,
        latency_ms=1000.0 * statistics.median(times),
        latency_ms_p90=1000.0 * float(sorted(times)[max(0, math.ceil(0.9 * len(times)) - 1)]),
        runs_ms=[1000.0 * t for t in times],
        throughput=batch_size / statistics.median(batch_times),
    )


def _environment(target: torch.device) -> dict[str, str]:
    """The software and machine a cost was measured with."""
    return {
        "trustser": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name(target) if target.type == "cuda" else "",
    }


def measure_cost(
    backbone: str,
    *,
    device: str | torch.device = "auto",
    seconds: float = DEFAULT_SECONDS,
    window: str = "trimmed",
    head_config: dict[str, Any] | None = None,
    head_source: str = "paper head (hidden 128, 4 classes), untrained: cost only",
    num_classes: int = 4,
    repeats: int = 20,
    batch_size: int = 8,
    timing: bool = True,
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CostReport:
    """Count parameters, MACs and FLOPs, and time backbone + head, for a ``seconds`` clip.

    Counting runs on the CPU with eager attention (exact and device independent); timing runs on
    ``device`` with the default attention kernel, at batch 1 (latency) and ``batch_size``
    (throughput). ``timing=False`` skips the timings (they are then ``None``). ``threads`` sets
    torch's CPU thread count for the timings (restored afterwards); on a shared machine one
    thread avoids the oversubscription that inflates multi-threaded latencies.
    """
    from trustser.devices import resolve_device

    model_name = ModelName.parse(backbone)
    if model_name.is_variant:  # same architecture and computation as the base: measure it
        report = measure_cost(
            model_name.base,
            device=device,
            seconds=seconds,
            window=window,
            head_config=head_config,
            head_source=head_source,
            num_classes=num_classes,
            repeats=repeats,
            batch_size=batch_size,
            timing=timing,
            threads=threads,
            seed=seed,
            progress=progress,
        )
        return as_variant_cost(report, str(model_name), basis="measured on the base backbone")
    check_positive("seconds", seconds)
    check_positive("batch_size", batch_size)
    check_positive("repeats", repeats)
    if threads is not None:
        check_positive("threads", threads)
    say = progress or (lambda _message: None)
    counted = _count_on_cpu(
        backbone,
        seconds=seconds,
        window=window,
        head_config=head_config,
        num_classes=num_classes,
        seed=seed,
        say=say,
    )
    target = resolve_device(device)
    timed = _Timed(threads=torch.get_num_threads())
    if timing:
        timed = _time_end_to_end(
            backbone,
            counted,
            target=target,
            window=window,
            batch_size=batch_size,
            repeats=repeats,
            threads=threads,
            say=say,
        )
    return CostReport(
        **counted.report_fields(),
        **timed.report_fields(),
        seconds=float(seconds),
        head_source=head_source,
        device=str(target) if timing else "not timed",
        throughput_batch_size=batch_size,
        repeats=repeats,
        environment=_environment(target),
    )


def as_variant_cost(report: CostReport, variant: str, *, basis: str) -> CostReport:
    """``report`` of a base backbone relabelled as the cost of its variant ``variant``.

    Fine-tuning changes weights, not the computation: a variant has its base's parameters,
    MACs and latency (the trainable parameters and training time are the profile's, from the
    heads' metrics).

    A variant that runs its base N times per clip (:attr:`~trustser.variants.Variant.inference_passes`:
    randomized smoothing's N noisy copies) has N times the base's MACs, FLOPs and latencies (the
    passes run one after another) and 1/N of its throughput; the parameters are the base's.
    """
    name = ModelName.parse(variant)
    relabelled = replace(
        report,
        backbone=str(ModelName(report.backbone, name.tag)),
        base_backbone=report.backbone,
        variant=name.tag,
        basis=basis,
    )
    parsed = parse_variant(name)
    n = parsed.inference_passes if parsed is not None else 1
    if n == 1:
        return relabelled

    def times(value: Any) -> Any:
        return None if value is None else value * n

    return replace(
        relabelled,
        backbone_macs=report.backbone_macs * n,
        head_macs=report.head_macs * n,
        attention_macs=report.attention_macs * n,
        macs_by_category={k: v * n for k, v in report.macs_by_category.items()},
        norm_macs=report.norm_macs * n,
        torch_flops=report.torch_flops * n,
        latency_ms=times(report.latency_ms),
        latency_ms_p90=times(report.latency_ms_p90),
        latency_ms_runs=[value * n for value in report.latency_ms_runs],
        throughput_clips_per_s=(
            None if report.throughput_clips_per_s is None else report.throughput_clips_per_s / n
        ),
        inference_passes=n,
        basis=f"{basis}; {parsed.kind.label}: {n} forward passes per clip ({n} x the base)",
    )


def _base_cost(runs: str | Path, variant: ModelName, options: dict[str, Any]) -> CostReport | None:
    """The base backbone's ``cost.json`` under ``runs`` as a report, when it was measured for the
    same clip length, window and head as asked now (else None: measure)."""
    from trustser.runs import RunLayout

    path = RunLayout(runs).cost_path(variant.base)
    if not path.is_file():
        return None
    try:
        data = read_cost(path)
    except CostError:
        return None
    known = {f.name for f in fields(CostReport)}
    report = CostReport(**{k: v for k, v in data.items() if k in known})
    wanted_head = _build_head(
        report.num_layers, report.dim, options.get("head_config"), options.get("num_classes", 4)
    )[1]
    same = (
        math.isclose(report.seconds, float(options.get("seconds", DEFAULT_SECONDS)))
        and (report.window or "trimmed") == options.get("window", "trimmed")
        and report.head_config == wanted_head
        and (report.latency_ms is not None or not options.get("timing", True))
    )
    return report if same else None


def run_cost(
    backbone: str,
    *,
    runs: str | Path | None = None,
    write: bool = True,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> tuple[CostReport, Path | None]:
    """``trustser cost``: measure, using a trained emotion head's config from ``runs`` when there
    is one, and write ``runs/<backbone>/cost.json`` unless ``write`` is False or ``runs`` is None.

    A variant (``<backbone>@top1``) costs what its base costs: its report is the base's
    ``cost.json`` under ``runs`` when that was measured for the same clip, window and head,
    else the base measured now, labelled as the variant's.
    """
    from trustser.runs import RunLayout, write_json

    if runs is not None and "head_config" not in options:
        # a defence at inference classifies with its base's heads
        parsed = parse_variant(backbone)
        found = head_config_from_runs(
            runs, parsed.base if parsed is not None and parsed.uses_base_heads else backbone
        )
        if found is not None:
            options["head_config"], sidecar = found
            options["head_source"] = f"trained emotion head config ({sidecar})"
    model_name = ModelName.parse(backbone)
    base = _base_cost(runs, model_name, options) if model_name.is_variant and runs else None
    if base is not None:
        report = as_variant_cost(
            replace(base, head_source=options.get("head_source", base.head_source)),
            backbone,
            basis=f"the base backbone's cost.json ({RunLayout(runs).cost_path(model_name.base)})",
        )
    else:
        report = measure_cost(backbone, progress=progress, **options)
    path = None
    if write and runs is not None:
        path = write_json(RunLayout(runs).cost_path(backbone), report.to_dict())
    return report, path


def read_cost(path: str | Path) -> dict[str, Any]:
    """A ``cost.json`` written by :func:`run_cost`; refuses other formats or versions."""
    from trustser.runs import read_json

    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != "trustser-cost":
        raise CostError(f"{str(path)!r} is not a trustser cost.json; rerun `trustser cost`.")
    if data.get("format_version") != COST_FORMAT_VERSION:
        raise CostError(
            f"{str(path)!r} has cost format version {data.get('format_version')!r}; this trustser "
            f"reads version {COST_FORMAT_VERSION}. Rerun `trustser cost` to refresh it."
        )
    return data
