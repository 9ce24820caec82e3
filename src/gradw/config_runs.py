"""The ``evaluate`` and ``demo`` sections (re-exported by :mod:`gradw.config`, which loads and
checks them against :data:`gradw.config_ranges.RULES` like every section)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SNRS = (20.0, 15.0, 10.0, 5.0, 0.0, -5.0, -10.0, -15.0, -20.0)


@dataclass
class EvaluationConfig:
    """The ``evaluate`` section: what ``gradw evaluate`` runs (``test`` and ``out`` are required)."""

    test: str = ""
    out: str = ""
    systems: list[str] = field(default_factory=lambda: ["noisy"])
    augment: str | None = None
    categories: list[str] = field(default_factory=lambda: ["noise", "music", "babble"])
    snrs: list[float] = field(default_factory=lambda: list(DEFAULT_SNRS))
    clean: bool = True
    rooms: bool = False
    scorer: str = "campplus"
    scorer_checkpoint: str | None = None  # required by a ResNet; "random" for random weights
    scorer_tap: str | None = None
    trials: str = "trials"
    max_trials: int | None = None
    clean_enroll: bool = False
    seed: int = 0
    n_boot: int = 1000
    cache_dir: str | None = None
    threads: int = 0
    batch_seconds: float | None = None  # None: 60 s on a GPU, one item at a time on the CPU
    save_every: int = 200
    figure_format: str = "png"  # the report's plots: png, pdf or svg
    dpi: int = 110  # resolution of PNG plots
    # an utterance longer than this is embedded as the mean of its windows' embeddings, read and
    # rendered window by window (bounded memory; see gradw.evaluation.windows); None: every
    # utterance whole. 30 s: a 30-minute utterance then peaks within 10 % of a 30-second one
    # (benchmarks/README.md section 7); with 60 s windows, E's and G's activations over the
    # window alone cost a quarter more.
    window_seconds: float | None = 30.0


@dataclass
class DemoConfig:
    """The ``demo`` section: the variants of the train section and the students of the adapt section
    to train, the system it ships, and the grid to evaluate."""

    out: str = "exp/demo"
    variants: dict[str, list[str]] = field(default_factory=dict)  # name -> overrides of the train section
    # label-free students trained after the variants (`gradw adapt`): name -> overrides of the adapt
    # section (``enhancer_checkpoint=OUT/VARIANT/best.pt`` puts one behind a variant's G)
    students: dict[str, list[str]] = field(default_factory=dict)
    # the system the demo ships (a variant's or a student's name; None: none named): the one the
    # rule of docs/levers.md chose on validation; its checkpoint is OUT/NAME/best.pt
    shipped: str | None = None
    peers: list[str] = field(default_factory=lambda: ["rnnoise", "deepfilternet3", "spectral-gating"])
    # the peers on the in-domain test too (False: on the out-of-domain test only, when it runs: no
    # peer was trained on this corpus, so neither pool is more familiar to them than the other)
    peers_in_domain: bool = True
    snrs: list[float] = field(default_factory=lambda: [0.0, -5.0, -10.0])
    categories: list[str] = field(default_factory=lambda: ["noise", "music", "babble"])
    max_trials: int | None = None
    n_boot: int = 1000
    eval_processes: int = 1
    # a second evaluation, on the out-of-domain pool (augment/test-ood: noise, music, babble from
    # sources no training or validation item comes from), into OUT/eval-ood; its SNRs (None: snrs)
    ood: bool = True
    ood_snrs: list[float] | None = None
