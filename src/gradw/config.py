"""Typed configuration: dataclasses, YAML presets, dotted command-line overrides.

Each stage reads one section of a preset: ``train`` (:class:`TrainConfig`, enhancer G),
``train_speaker`` (:class:`SpeakerTrainConfig`, speaker network E), ``adapt``
(:class:`AdaptConfig`, the label-free student E), ``evaluate``
(:class:`EvaluationConfig`) and ``demo`` (:class:`DemoConfig`). Presets ship inside the package
(``gradw/configs/*.yaml``: tiny, demo, full, paper); a ``configs/NAME.yaml`` in the current folder
or any YAML path can be given instead; any key can be overridden with
``section.key=value`` (the value is parsed as YAML, so ``loss.temperature=0.5`` is a float and
``enhancer.blocks=[1,1,1,1]`` a list). Unknown keys and ill-typed values fail with one line naming
the key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gradw.config_calibration import CalibrationConfig, FusionConfig
from gradw.config_calibration import ScoreNormConfig as ScoreNormConfig  # re-exported
from gradw.config_ranges import first_out_of_range
from gradw.config_runs import DEFAULT_SNRS as DEFAULT_SNRS  # re-exported
from gradw.config_runs import DemoConfig as DemoConfig  # re-exported
from gradw.config_runs import EvaluationConfig as EvaluationConfig  # re-exported
from gradw.errors import GradwError
from gradw.fileio import atomic_write

# presets: ./configs (the user's own) first, then the presets shipped inside the package
PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: the value of a speaker network's checkpoint key (``speaker.checkpoint``, ``scorer_checkpoint``)
#: that asks for randomly initialised weights: a ResNet without a checkpoint is refused otherwise
RANDOM_WEIGHTS = "random"


class ConfigError(GradwError, ValueError):
    """A configuration file or override is invalid; the message names the key."""


# ---------------------------------------------------------------------------------------------
# sections


@dataclass
class SnrConfig:
    """Training noise levels per category (dB)."""

    noise: tuple[float, float] = (-10.0, 0.0)
    music: tuple[float, float] = (-10.0, 0.0)
    babble_talkers: tuple[int, int] = (5, 7)
    babble_snrs: tuple[float, ...] = (5.0, 8.0, 10.0, 13.0, 15.0)


@dataclass
class NoiseColourConfig:
    """Random spectral colouring of each training noise and music segment (gradw.audio.colour):
    with probability ``prob``, a tilt uniform in +-``tilt_db`` dB per octave and ``bands`` random
    bumps or notches of up to +-``eq_db`` dB, before the segment is scaled to its SNR. 0: off."""

    prob: float = 0.0
    tilt_db: float = 3.0
    eq_db: float = 10.0
    bands: int = 3


@dataclass
class DataConfig:
    """Where the training data is and how examples are drawn."""

    train: str = ""
    augment: str = ""
    val: str | None = None
    val_augment: str | None = None
    crop_seconds: float = 5.0
    snr: SnrConfig = field(default_factory=SnrConfig)
    category_probs: dict[str, float] | None = None
    clean_fraction: float = 0.0
    reverb_prob: float = 0.0
    num_workers: int = 0
    preload: bool = False
    # train on this many speakers, spread evenly over the sorted list (a scale study); None: all
    max_speakers: int | None = None
    noise_colour: NoiseColourConfig = field(default_factory=NoiseColourConfig)


@dataclass
class SpeakerConfig:
    """The fixed speaker network E."""

    name: str = "campplus"
    checkpoint: str | None = None  # required by a ResNet; "random" (RANDOM_WEIGHTS) for random weights
    tap: str | None = None
    centroid_crop_seconds: float = 6.0


@dataclass
class EnhancerConfig:
    """The mask U-Net G."""

    base_width: int = 32
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    up_layers: tuple[int, ...] = (3, 4, 6)
    init_bias: float | None = None
    min_gain_db: float | None = None


@dataclass
class LossConfig:
    """The training objective (see gradw.losses)."""

    scheme: str = "gradw"
    temperature: float = 1.0
    clip: float = 3.0
    embedding_weight: float = 0.0
    # weight of the penalty on attenuating cells the noise left intact (gradw.losses.suppression); 0: off
    keep_weight: float = 0.0
    # how the gradients of the activation loss and the embedding term combine: "none" (their
    # sum) or "project" (PCGrad where they conflict; see gradw.losses.pcgrad)
    conflict: str = "none"


@dataclass
class OptimConfig:
    """Adam with linear warm-up then a constant learning rate (the paper's schedule)."""

    lr: float = 5e-4
    warmup_steps: int = 1000
    steps: int = 10000
    batch_size: int = 32
    grad_clip: float | None = None


@dataclass
class ValidationConfig:
    """Validation EER during training, on held-out speakers."""

    every: int = 0
    snrs: tuple[float, ...] = (0.0, -5.0)
    categories: tuple[str, ...] = ("noise", "music", "babble")
    max_trials: int = 2000


@dataclass
class TrainConfig:
    """Training of the enhancer G against a fixed E (``gradw train``).

    ``cache_dir`` holds what training computes once and reuses (E's class centroids); empty means
    ``OUT_DIR/cache``. Name a shared folder to reuse it across runs.
    """

    out_dir: str = "exp/enhancer"
    cache_dir: str = ""
    seed: int = 0
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    enhancer: EnhancerConfig = field(default_factory=EnhancerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    checkpoint_every: int = 500
    log_every: int = 10
    tensorboard: bool = True


@dataclass
class SpeakerModelConfig:
    """Architecture of a trainable speaker network (stage 1)."""

    name: str = "resnet34"
    base_width: int = 32
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    embedding_dim: int = 256
    frontend: str = "logmel"


@dataclass
class AamConfig:
    """Additive angular margin softmax with a margin ramp."""

    scale: float = 32.0
    margin: float = 0.2
    margin_ramp_start: int = 0
    margin_ramp_end: int = 0


@dataclass
class SpeakerTrainConfig:
    """Training of a speaker network E (``gradw train-speaker``)."""

    out_dir: str = "exp/speaker"
    seed: int = 0
    threads: int = 0
    train: str = ""
    augment: str | None = None
    augment_prob: float = 0.6
    # share of the augmented crops that are first reverberated with an RIR of the augment dir
    reverb_prob: float = 0.0
    crop_seconds: float = 2.0
    speed_perturb: bool = True
    num_workers: int = 0
    model: SpeakerModelConfig = field(default_factory=SpeakerModelConfig)
    aam: AamConfig = field(default_factory=AamConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500
    log_every: int = 10
    tensorboard: bool = True


@dataclass
class AdapterConfig:
    """How the student speaker network is made trainable (see gradw.models.adapters)."""

    # "lora": low-rank adapters on the selected Conv1d/Conv2d/Linear layers; "full": the selected
    # layers' own parameters trained as they are
    mode: str = "lora"
    rank: int = 8
    alpha: float = 16.0
    # fnmatch patterns on module names (a match includes its descendants); "all": the whole body
    layers: tuple[str, ...] = ("all",)


@dataclass
class AdaptLossConfig:
    """The label-free adaptation objective (gradw.training.adapt); a weight of 0 turns a term off."""

    # 1 - cos(student(noisy or enhanced), teacher(clean))
    embedding_weight: float = 1.0
    # weighted L1 between the student's tap activation on the noisy input and the teacher's on clean
    tap_weight: float = 0.0
    # position weights of the tap term: "equal" or "gradw-norm" (label-free, see gradw.training.adapt)
    scheme: str = "equal"
    temperature: float = 1.0
    clip: float = 3.0
    # 1 - cos(student(clean), teacher(clean)): what the student must not forget
    consistency_weight: float = 1.0
    # sum of squared distances of the trained weights from their initial values
    anchor_weight: float = 0.0
    # |cos(student noisy i, student noisy j) - cos(teacher clean i, teacher clean j)|, mean over pairs
    relation_weight: float = 0.0


@dataclass
class JointConfig:
    """G trained with the student (``gradw adapt``, gradw.training.joint): G's loss is
    objective_weight x its own objective (``loss``, as in the train section) + the student's loss."""

    enabled: bool = False
    objective_weight: float = 1.0  # 0: G learns from the student's loss alone
    lr: float = 5e-4  # G's rate (the student's is optim.lr; both warm up over optim.warmup_steps)
    # how G's two gradients combine: "none" (sum) or "project" (PCGrad where they conflict)
    conflict: str = "none"
    loss: LossConfig = field(default_factory=LossConfig)  # its own conflict key stays "none"
    # G without enhancer_checkpoint, at its identity start (init_bias set: a constant mask, which
    # the mean normalisation removes)
    enhancer: EnhancerConfig = field(default_factory=lambda: EnhancerConfig(init_bias=0.0))


@dataclass
class AdaptConfig:
    """Label-free adaptation of a student copy of E to noisy (or G-enhanced) speech (``gradw adapt``)."""

    out_dir: str = "exp/adapted"
    seed: int = 0
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    loss: AdaptLossConfig = field(default_factory=AdaptLossConfig)
    # a G checkpoint of `gradw train`: the student then sees G's masked features (G stays frozen
    # unless joint.enabled: then G starts from it and trains with the student)
    enhancer_checkpoint: str | None = None
    joint: JointConfig = field(default_factory=JointConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-5, warmup_steps=0, steps=200, batch_size=8)
    )
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    checkpoint_every: int = 100
    log_every: int = 10
    tensorboard: bool = True


def check_config(config: Any, prefix: str = "") -> None:
    """Check a whole config, every section: what loading a preset does, for a config built in
    code (the trainers call it before any work).

    Raises:
        ConfigError: as :func:`check_ranges`.
    """
    check_ranges(config, prefix)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_config(value, f"{prefix}{f.name}.")


def check_ranges(config: Any, prefix: str = "") -> None:
    """Check the values of one section (not its sub-sections) against
    :data:`gradw.config_ranges.RULES`.

    Raises:
        ConfigError: naming the first key out of range, its value and what is allowed.
    """
    problem = first_out_of_range(config, prefix)
    if problem is not None:
        raise ConfigError(problem)


# ---------------------------------------------------------------------------------------------
# conversion

T = TypeVar("T")


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check and convert a YAML value to the annotated type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(hint, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (valid: {', '.join(sorted(names))})")
    kwargs = {name: _convert(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    config = cls(**kwargs)
    check_ranges(config, prefix)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain, YAML/JSON-able Python (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of nested mapping ``data`` with dotted overrides applied."""
    merged = copy.deepcopy(data)  # keeps the order of every mapping (the demo's variants run in it)
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"override {'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return merged


def preset_path(name_or_path: str) -> Path:
    """A preset name (``tiny``, ``demo``, ``paper``) or a YAML path -> the file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"config file not found: {candidate}")
        return candidate
    for directory in (Path.cwd() / "configs", PACKAGE_CONFIG_DIR):
        path = directory / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"unknown preset {name_or_path!r}: choose one of {', '.join(preset_names())} or give a YAML file"
    )


def preset_names() -> list[str]:
    """The names of the presets shipped inside the package."""
    return sorted(p.stem for p in PACKAGE_CONFIG_DIR.glob("*.yaml"))


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a mapping")
    return data


#: the override that moves a preset's corpus: every ``${data.root}`` in its sections becomes it
ROOT_KEY = "data.root"
ROOT_REFERENCE = "${data.root}"


def split_root(overrides: list[str]) -> tuple[str | None, list[str]]:
    """(the value of a ``data.root=PATH`` override or None, the other overrides)."""
    root, rest = None, []
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep and key.strip() == ROOT_KEY:
            root = value.strip()
            if not root:
                raise ConfigError("data.root: give a folder (data.root=PATH)")
        else:
            rest.append(text)
    return root, rest


def _expand_root(node: Any, root: str | None, where: str) -> tuple[Any, bool]:
    """``node`` with ``${data.root}`` replaced by ``root`` in every string; and whether any was."""
    if isinstance(node, str):
        if ROOT_REFERENCE not in node:
            return node, False
        if root is None:
            raise ConfigError(f"{where}: {node!r} refers to ${{data.root}}, but no data.root is set")
        return node.replace(ROOT_REFERENCE, root.rstrip("/") or "/"), True
    if isinstance(node, dict):
        items = {k: _expand_root(v, root, where) for k, v in node.items()}
        return {k: v for k, (v, _) in items.items()}, any(used for _, used in items.values())
    if isinstance(node, list):
        items = [_expand_root(v, root, where) for v in node]
        return [v for v, _ in items], any(used for _, used in items)
    return node, False


def load_section(
    preset: str | None, section: str | None, overrides: list[str] | None = None, required: bool = True
) -> dict[str, Any]:
    """One section of a preset (the whole file when ``section`` is None) as a mapping, with the
    ``KEY=VALUE`` overrides applied and ``${data.root}`` expanded to the preset's ``data.root``,
    or to a ``data.root=PATH`` override: the one override that moves the corpus.

    Raises:
        ConfigError: a missing section (unless not ``required``: then it is empty); ``${data.root}``
            with no root; a ``data.root`` override for a section that uses no ``${data.root}``
            (it would change nothing).
    """
    whole: dict[str, Any] = load_yaml(preset_path(preset)) if preset is not None else {}
    root, rest = split_root(list(overrides or []))
    given = root is not None
    if root is None:
        configured = (whole.get("data") or {}).get("root") if isinstance(whole.get("data"), dict) else None
        root = None if configured is None else str(configured)
    data = whole
    if section is not None:
        if preset is not None and section not in whole and required:
            raise ConfigError(f"preset {preset!r} has no section {section!r}")
        data = whole.get(section) or {}
    data, used = _expand_root(apply_overrides(data, rest), root, section or str(preset))
    if given and not used:
        raise ConfigError(
            f"data.root={root}: {'section ' + section if section else 'the config'} of "
            f"{preset or 'the command line'} names no path under ${{data.root}}, so it would move nothing"
        )
    return data


def load_config(
    cls: type[T], preset: str | None = None, overrides: list[str] | None = None, section: str | None = None
) -> T:
    """Build a config of type ``cls`` from a preset (optionally one section of it) and overrides
    (see :func:`load_section`)."""
    return from_dict(cls, load_section(preset, section, overrides))


def save_config(config: Any, path: Path) -> None:
    """Write a config as YAML, atomically."""
    atomic_write(path, yaml.safe_dump(to_dict(config), sort_keys=False))


#: preset section -> its config class (``gradw config --section NAME``)
SECTIONS: dict[str, type] = {
    "train": TrainConfig,
    "train_speaker": SpeakerTrainConfig,
    "evaluate": EvaluationConfig,
    "demo": DemoConfig,
    "adapt": AdaptConfig,
}
