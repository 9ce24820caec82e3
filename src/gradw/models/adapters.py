"""Speaker-side adaptation: low-rank adapters (LoRA) or full fine-tuning of a speaker network.

A *student* copy of a speaker network E is made trainable in one of two ways:

- **LoRA** (``rank >= 1``): every selected ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear`` is
  wrapped in a :class:`LoRALayer` that keeps the base layer frozen and adds a trainable
  low-rank update of its weight, ``W' = W + (alpha / r) * B @ A`` (A: (r, fan_in), B: (C_out, r),
  B starts at zero, so the student equals E exactly at step 0). Everything else is frozen.
- **full** (``rank == 0``): the parameters of the selected modules are unfrozen as they are
  (no wrapper); everything else is frozen.

Layers are selected by :func:`fnmatch.fnmatchcase` patterns on ``named_modules()`` names; a
pattern selects the modules it matches *and their descendants*, so ``campplus.xvector`` and
``campplus.xvector.*`` select the same layers. The pattern ``all`` selects the whole network
body (everything but the front-end and the classification head). A pattern that selects
nothing adaptable is an error naming it.

BatchNorm statistics are never updated by adaptation: the student must run in eval mode (the
training code keeps it there), so BN layers normalise with E's running statistics, while their
affine parameters are trainable in full mode.

Checkpoints of ``gradw adapt`` (kind ``"adapted"``) store only what adaptation changed
(:func:`adapter_state_dict`) with the description of the base network; :func:`load_adapted`
rebuilds the student from them (and the frozen enhancer G, when one was used).
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ADAPTABLE_LAYERS",
    "ADAPTER_MODES",
    "AdapterSpec",
    "LoRALayer",
    "adapter_spec",
    "adapter_state_dict",
    "base_digest",
    "inject_adapters",
    "load_adapter_state",
    "merge_adapters",
    "select_modules",
    "trainable_parameters",
]

ADAPTABLE_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Layer types a LoRA adapter can wrap."""

ADAPTER_MODES: tuple[str, ...] = ("lora", "full")
"""``lora``: low-rank adapters (rank >= 1); ``full``: the selected parameters unfrozen (rank 0)."""

# subtrees that "all" leaves alone: the feature front-end and the classification head
_EXCLUDED_FROM_ALL = ("frontend", "head")
_SPEC_ATTRIBUTE = "adapter_spec"


# ---------------------------------------------------------------------------------------------
# the adapter layer


class LoRALayer(nn.Module):
    """A frozen Conv1d / Conv2d / Linear plus a trainable low-rank update of its weight.

    ``y = layer(x; W + (alpha / r) * (B @ A).view_as(W))``: the base layer (its bias, stride,
    padding, dilation) run with the updated weight (:meth:`merged_weight`), the same as
    ``base(x) + (alpha / r) * B(A(x))`` with A an r-channel layer of the base's kind and B a 1x1
    map. The one-layer form costs a small matrix product per call and no extra convolution; on
    CAM++ on the CPU it trains faster than the two-branch form (``benchmarks/adapter_step.py``).

    Args:
        base: the layer to adapt (groups = 1 for convolutions); its parameters are frozen.
        rank: r >= 1.
        alpha: scale numerator (default ``rank``: scale 1).

    Attributes:
        lora_A: (r, fan_in) with fan_in = C_in * prod(kernel), Kaiming-uniform initialised.
        lora_B: (C_out, r), zero-initialised (the layer equals ``base`` at first).

    Shapes: those of ``base``: (B, C_in, T) -> (B, C_out, T') for Conv1d, (B, C_in, F, T) ->
    (B, C_out, F', T') for Conv2d, (..., C_in) -> (..., C_out) for Linear.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        if not isinstance(base, ADAPTABLE_LAYERS):
            raise TypeError(f"LoRA wraps Conv1d, Conv2d or Linear layers, not {type(base).__name__}")
        if isinstance(base, nn.Conv1d | nn.Conv2d) and base.groups != 1:
            raise ValueError(f"LoRA supports convolutions with groups=1 only (got groups={base.groups})")
        if int(rank) < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = int(rank)
        self.alpha = float(self.rank if alpha is None else alpha)
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {alpha}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        weight = base.weight
        fan_in = weight[0].numel()
        self.lora_A = nn.Parameter(torch.empty(self.rank, fan_in, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(
            torch.zeros(weight.shape[0], self.rank, dtype=weight.dtype, device=weight.device)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def scale(self) -> float:
        """alpha / r."""
        return self.alpha / self.rank

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / r) * (B @ A)`` in the shape of the base weight."""
        return (self.scale * (self.lora_B @ self.lora_A)).view_as(self.base.weight)

    def merged_weight(self) -> Tensor:
        """The base weight plus the update: the weight of the equivalent plain layer."""
        return self.base.weight + self.delta_weight()

    def forward(self, x: Tensor) -> Tensor:
        base = self.base
        weight = self.merged_weight()
        if isinstance(base, nn.Linear):
            return F.linear(x, weight, base.bias)
        return base._conv_forward(x, weight, base.bias)  # the base's stride, padding (mode), dilation

    def merged(self) -> nn.Module:
        """A plain copy of the base layer carrying the merged weight (frozen)."""
        layer = copy.deepcopy(self.base)
        with torch.no_grad():
            layer.weight.copy_(self.merged_weight())
        for p in layer.parameters():
            p.requires_grad_(False)
        return layer

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


# ---------------------------------------------------------------------------------------------
# selection and injection


@dataclass
class AdapterSpec:
    """What :func:`inject_adapters` did to a network (JSON-able; stored in checkpoints).

    Attributes:
        mode: ``lora`` or ``full``.
        rank: r (0 in full mode).
        alpha: LoRA scale numerator (unused in full mode).
        layers: the selection patterns as given.
        targets: the adapted layers (LoRA) or the modules whose parameters were unfrozen (full),
            as ``named_modules()`` names of the original network, in module order.
    """

    mode: str
    rank: int
    alpha: float
    layers: list[str]
    targets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterSpec:
        return cls(
            mode=str(data["mode"]),
            rank=int(data["rank"]),
            alpha=float(data["alpha"]),
            layers=[str(p) for p in data["layers"]],
            targets=[str(t) for t in data.get("targets", [])],
        )


def _in_body(name: str) -> bool:
    return bool(name) and not any(name == top or name.startswith(top + ".") for top in _EXCLUDED_FROM_ALL)


def select_modules(model: nn.Module, patterns: Sequence[str], kind: str = "lora") -> list[str]:
    """Names of the modules that the patterns select, in ``named_modules()`` order.

    Args:
        model: the network.
        patterns: fnmatch patterns on module names (a match selects the module and its
            descendants), or ``all`` (the body: every module but ``frontend`` and ``head``).
        kind: ``lora``: the selected Conv1d / Conv2d / Linear layers; ``full``: the selected
            modules that hold parameters of their own.

    Raises:
        ValueError: no pattern given, or a pattern that selects nothing of that kind (named).
    """
    if kind not in ADAPTER_MODES:
        raise ValueError(f"unknown adapter mode {kind!r}: expected one of {', '.join(ADAPTER_MODES)}")
    patterns = [str(p) for p in patterns]
    if not patterns:
        raise ValueError("no layer patterns given (use 'all' for the whole network)")
    modules = list(model.named_modules())

    def eligible(module: nn.Module) -> bool:
        if kind == "lora":
            return isinstance(module, ADAPTABLE_LAYERS)
        return any(True for _ in module.parameters(recurse=False))

    chosen: set[str] = set()
    for pattern in patterns:
        if pattern == "all":
            hits = {name for name, module in modules if _in_body(name) and eligible(module)}
        else:
            roots = [name for name, _ in modules if name and fnmatch.fnmatchcase(name, pattern)]
            hits = {
                name
                for name, module in modules
                if eligible(module) and any(name == r or name.startswith(r + ".") for r in roots)
            }
        if not hits:
            what = "Conv1d, Conv2d or Linear layer" if kind == "lora" else "module with parameters"
            raise ValueError(f"adapter layer pattern {pattern!r} matches no {what} of {type(model).__name__}")
        chosen |= hits
    return [name for name, _ in modules if name in chosen]


def inject_adapters(
    model: nn.Module, layers: Sequence[str] = ("all",), rank: int = 8, alpha: float | None = None
) -> AdapterSpec:
    """Make ``model`` an adaptable student, in place.

    Every parameter is frozen, then either (``rank >= 1``) each selected Conv1d / Conv2d /
    Linear is replaced by a :class:`LoRALayer` around it, or (``rank == 0``) the parameters of the
    selected modules are unfrozen as they are. The network's output is unchanged at this point
    (LoRA's B is zero). The spec is stored on the model (``model.adapter_spec``) for
    :func:`adapter_state_dict`, :func:`load_adapter_state` and :func:`merge_adapters`.

    Keep the model in eval mode while training it: BatchNorm must normalise with the frozen
    running statistics.

    Args:
        model: a speaker network (any ``nn.Module``), not yet adapted.
        layers: selection patterns (see :func:`select_modules`).
        rank: LoRA rank r, or 0 for full fine-tuning of the selection.
        alpha: LoRA scale numerator (default r).

    Returns:
        The :class:`AdapterSpec`.

    Raises:
        ValueError: a pattern that selects nothing, a negative rank, or a model already adapted.
    """
    if adapter_spec(model) is not None:
        raise ValueError(f"{type(model).__name__} already carries adapters")
    if int(rank) < 0:
        raise ValueError(f"adapter rank must be >= 0 (0: full fine-tuning), got {rank}")
    mode = "full" if int(rank) == 0 else "lora"
    targets = select_modules(model, layers, kind=mode)
    for p in model.parameters():
        p.requires_grad_(False)
    if mode == "full":
        for name in targets:
            for p in model.get_submodule(name).parameters(recurse=False):
                p.requires_grad_(True)
    else:
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALayer(getattr(parent, child), int(rank), alpha))
    spec = AdapterSpec(
        mode=mode,
        rank=int(rank),
        alpha=float(int(rank) if alpha is None else alpha) if mode == "lora" else 0.0,
        layers=[str(p) for p in layers],
        targets=targets,
    )
    object.__setattr__(model, _SPEC_ATTRIBUTE, spec)
    return spec


def adapter_spec(model: nn.Module) -> AdapterSpec | None:
    """The :class:`AdapterSpec` of a model made a student by :func:`inject_adapters`, or None."""
    spec = getattr(model, _SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, AdapterSpec) else None


def _require_spec(model: nn.Module) -> AdapterSpec:
    spec = adapter_spec(model)
    if spec is None:
        raise ValueError(f"{type(model).__name__} carries no adapters (call inject_adapters first)")
    return spec


def _adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    spec = _require_spec(model)
    out: dict[str, nn.Parameter] = {}
    for name in spec.targets:
        module = model.get_submodule(name)
        if spec.mode == "lora":
            if not isinstance(module, LoRALayer):
                raise ValueError(f"{name} should be a LoRA layer but is a {type(module).__name__}")
            out[f"{name}.lora_A"] = module.lora_A
            out[f"{name}.lora_B"] = module.lora_B
        else:
            for pname, p in module.named_parameters(recurse=False):
                out[f"{name}.{pname}"] = p
    return out


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters adaptation trains (LoRA A and B, or the unfrozen ones), in module order."""
    return list(_adapter_parameters(model).values())


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only what adaptation trains: ``{"<layer>.lora_A": (r, fan_in), "<layer>.lora_B":
    (C_out, r), ...}`` (LoRA) or ``{"<module>.<param>": tensor, ...}`` (full), detached, on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in _adapter_parameters(model).items()}


def load_adapter_state(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load what :func:`adapter_state_dict` returned into an identically adapted model.

    Raises:
        ValueError: missing or unexpected keys, or shapes that differ (the first few named).
    """
    params = _adapter_parameters(model)
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(p.shape)}"
        for k, p in params.items()
        if k in state and tuple(state[k].shape) != tuple(p.shape)
    ]
    problems = [
        f"{what}: {', '.join(keys[:3])}" + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
        )
        if keys
    ]
    if problems:
        raise ValueError("adapter weights do not match the adapted network: " + "; ".join(problems))
    with torch.no_grad():
        for key, p in params.items():
            p.copy_(state[key].to(device=p.device, dtype=p.dtype))


def merge_adapters(model: nn.Module) -> nn.Module:
    """A plain copy of an adapted model: every LoRA layer replaced by its base layer carrying
    ``W + (alpha / r) B A`` (full mode: a copy as is). Its outputs equal the adapted model's up
    to rounding; it carries no adapter spec, its parameters are frozen, and its state-dict keys
    are those of the original network. ``model`` itself is left unchanged."""
    _require_spec(model)
    plain = copy.deepcopy(model)
    object.__delattr__(plain, _SPEC_ATTRIBUTE)
    for name, module in list(plain.named_modules()):
        if isinstance(module, LoRALayer):
            parent_name, _, child = name.rpartition(".")
            parent = plain.get_submodule(parent_name) if parent_name else plain
            setattr(parent, child, module.merged())
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain


def base_digest(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a network's state dict (names, shapes, dtypes, values): the
    identity of the base network an adapter belongs to."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]
