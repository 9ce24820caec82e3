"""``gradw demo``: the paper's question answered end to end on the embedded corpus.

Stages (each skipped when its output is already complete, so a rerun reuses what is done):

1. build the synthvox corpus of the preset (``data`` section of the preset);
2. train G once per variant of the ``demo`` section (Grad-W and Equal-W against CAM++), then a
   student copy of CAM++ per student (``gradw adapt``, label-free), and calibrate each selected
   ``best.pt`` when the calibration it holds is not the one its config asks for (a run trained
   before the config changed is calibrated without training again);
3. evaluate noisy / each G / each student / the waveform peers on clean speech and every
   category x SNR, twice: on the in-domain test pool (``augment/test``, into ``OUT/eval``) and on
   the out-of-domain one (``augment/test-ood``: noise, music and babble from sources no training
   or validation item comes from, into ``OUT/eval-ood``; built into a corpus that lacks it); with
   ``peers_in_domain: false`` the peers run on the out-of-domain pool only;
4. print both EER tables and write ``OUT/eval/report.md`` and ``OUT/eval-ood/report.md``, and
   name the shipped system (``shipped``: the one docs/levers.md's rule chose) and its checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gradw.config import (
    ROOT_KEY,
    AdaptConfig,
    ConfigError,
    DemoConfig,
    EvaluationConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    load_yaml,
    preset_path,
    split_root,
    to_dict,
)
from gradw.data.corpora.synthvox.presets import OOD_POOL
from gradw.data.lists import atomic_write_text
from gradw.runlock import RunLock
from gradw.training.loop import TrainingError


def _demo_config(
    preset: str, overrides: list[str] | None = None
) -> tuple[dict[str, Any], DemoConfig, list[str]]:
    """The preset's data section (its ``root`` replaced by a ``data.root=PATH`` override) and its
    demo section with the other overrides, and the ``data.root`` override to pass on to the
    trainings (empty when none was given)."""
    data = load_yaml(preset_path(preset))
    if "demo" not in data or "data" not in data:
        raise ConfigError(f"preset {preset!r} has no demo or data section")
    root, rest = split_root(list(overrides or []))
    data_cfg = dict(data["data"]) if root is None else {**data["data"], "root": root}
    moved = [] if root is None else [f"{ROOT_KEY}={root}"]
    demo = from_dict(DemoConfig, apply_overrides(data["demo"] or {}, rest), "demo.")
    both = sorted(set(demo.variants) & set(demo.students))
    if both:
        raise ConfigError(f"demo.students: {both[0]!r} is a variant's name too: one run per name")
    if demo.shipped is not None and demo.shipped not in {**demo.variants, **demo.students}:
        names = {"variants": demo.variants, "students": demo.students}
        known = "; ".join(f"{kind}: {', '.join(runs) or 'none'}" for kind, runs in names.items())
        raise ConfigError(f"demo.shipped: {demo.shipped!r} is neither a variant nor a student ({known})")
    return data_cfg, demo, moved


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"[gradw demo] {message}", flush=True)


def run_demo(
    preset: str = "demo",
    quiet: bool = False,
    processes: int | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Run every stage; returns the report path. ``overrides`` (``KEY=VALUE``) apply to the demo
    section, e.g. ``n_boot=200`` or ``peers=[]``."""
    data_cfg, demo, moved = _demo_config(preset, overrides)
    with RunLock(demo.out, "demo"):
        return _run_demo(preset, data_cfg, demo, quiet, processes, moved)


def _run_demo(
    preset: str,
    data_cfg: dict[str, Any],
    demo: DemoConfig,
    quiet: bool,
    processes: int | None,
    moved: list[str],
) -> Path:
    started = time.time()
    root = Path(data_cfg["root"])
    out = Path(demo.out)

    # 1. data
    if not (root / "manifest.json").is_file() or not (root / "test" / "trials").is_file():
        from gradw.data.corpora.synthvox.build import build_synthvox

        _log(f"building the {data_cfg['preset']} corpus in {root}", quiet)
        build_synthvox(root, preset=data_cfg["preset"], quiet=quiet)
    else:
        _log(f"corpus found in {root}", quiet)
    ood = demo.ood and _ood_pool(root, quiet)

    # 2. training: one G per variant, then one student per student entry (which may stand behind
    # a variant's G)
    runs = [
        *((n, "train", o) for n, o in demo.variants.items()),
        *((n, "adapt", o) for n, o in demo.students.items()),
    ]
    trained = {name: _trained_run(name, section, o, preset, out, moved, quiet) for name, section, o in runs}
    learned = ["noisy", *(f"{name}:{checkpoint}" for name, checkpoint in trained.items())]
    peers = _available_peers(demo.peers, quiet)

    # 3. evaluation (sharded over processes with torchrun when asked): the in-domain test pool,
    # then the out-of-domain one; the second reads the first's cache, so the clean condition's
    # embeddings (the same audio through the same systems) are computed once
    nproc = processes or demo.eval_processes
    runs = evaluation_runs(demo, learned, peers, ood)
    for name, pool, snrs, chosen, title in runs:
        evaluation = EvaluationConfig(
            test=str(root / "test"),
            out=str(out / name),
            systems=chosen,
            augment=str(root / "augment" / pool),
            categories=list(demo.categories),
            snrs=list(snrs),
            clean=True,
            max_trials=demo.max_trials or None,
            n_boot=demo.n_boot,
            cache_dir=str(out / "eval" / "cache"),
        )
        _log(f"evaluating {len(chosen)} systems with {nproc} process(es) in {out / name} ({title})", quiet)
        print(f"{title} ({out / name})")
        if nproc > 1:
            _evaluate_in_processes(evaluation, out, nproc, quiet, name.replace("eval", "evaluate") + ".yaml")
        else:
            from gradw.evaluation.grid import evaluate
            from gradw.evaluation.report.tables import summary_table

            rows = evaluate(evaluation, quiet=quiet)
            print(summary_table(rows), end="")
            print(f"report: {out / name / 'report.md'}")
    report = out / "eval" / "report.md"
    if demo.shipped is not None:
        print(f"the shipped system: {demo.shipped} ({trained[demo.shipped]})")
    _log(f"done in {(time.time() - started) / 60:.1f} min; report: {report}", quiet)
    return report


def evaluation_runs(
    demo: DemoConfig, learned: list[str], peers: list[str], ood: bool
) -> list[tuple[str, str, list[float], list[str], str]]:
    """The demo's evaluations: (out folder name, augment pool, SNRs, systems, title) each.

    The in-domain test runs every learned system (``noisy`` first) and, unless
    ``demo.peers_in_domain`` is false while the out-of-domain test runs, the peers; the
    out-of-domain test (when ``ood``) runs all of them.
    """
    everything = [*learned, *peers]
    in_domain = everything if demo.peers_in_domain or not ood else list(learned)
    runs = [("eval", "test", list(demo.snrs), in_domain, "in-domain test: augment/test")]
    if ood:
        title = f"out-of-domain test: augment/{OOD_POOL}"
        runs.append(("eval-ood", OOD_POOL, list(demo.ood_snrs or demo.snrs), everything, title))
    return runs


def _trained_run(
    name: str, section: str, overrides: list[str], preset: str, out: Path, moved: list[str], quiet: bool
) -> Path:
    """Train (or resume, or reuse) the run ``OUT/NAME`` of the preset's ``train`` section (a G) or
    ``adapt`` section (a student) with the overrides, calibrate its selected checkpoint when the
    calibration it holds is not the one its config asks for, and return its checkpoint:
    ``best.pt`` (selected on the validation speakers' EER) when validation ran, else
    ``last.pt``."""
    from gradw.training.adapt import train_adapter
    from gradw.training.calibrate import calibrate_checkpoint, needs_calibration
    from gradw.training.enhancer import train_enhancer

    run_dir = out / name
    config_type, train = (TrainConfig, train_enhancer) if section == "train" else (AdaptConfig, train_adapter)
    config = load_config(config_type, preset, [*overrides, f"out_dir={run_dir}", *moved], section=section)
    check_same_recipe(run_dir, config)
    done = run_dir / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("steps") == config.optim.steps:
        _log(f"{name}: already trained ({run_dir})", quiet)
    else:
        what = config.loss.scheme if section == "train" else f"student, {config.adapter.mode}"
        _log(f"training {name} ({what}, {config.optim.steps} steps) in {run_dir}", quiet)
        train(config, resume=(run_dir / "last.pt").is_file(), quiet=quiet)
    best = run_dir / "best.pt"
    if best.is_file() and needs_calibration(best, config):
        _log(f"{name}: calibrating {best} on the validation speakers", quiet)
        calibrate_checkpoint(best, config, quiet=quiet)
    return best if best.is_file() else run_dir / "last.pt"


#: config keys that do not change what a run learns: a finished run that differs from the preset
#: only in them is reused (a changed calibration is refitted on the selected checkpoint instead; a
#: run folder moved elsewhere keeps its old out_dir), and ``optim.steps``, which a run continues
#: by resuming
UNLEARNED_KEYS = frozenset({"out_dir", "threads", "log_every", "calibration", "optim.steps"})


def recipe_differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs as nested dicts (``to_dict``
    form), each as ``"key: SAVED there, WANTED now"``; ``UNLEARNED_KEYS`` are skipped."""
    differences = []
    for key in dict.fromkeys([*saved, *wanted]):
        if f"{prefix}{key}" in UNLEARNED_KEYS:
            continue
        there, now = saved.get(key), wanted.get(key)
        if isinstance(there, dict) and isinstance(now, dict):
            differences += recipe_differences(there, now, f"{prefix}{key}.")
        elif there != now:
            differences.append(f"{prefix}{key}: {there!r} there, {now!r} now")
    return differences


def check_same_recipe(run_dir: Path, config: TrainConfig | AdaptConfig) -> None:
    """Refuse to reuse or resume the run in ``run_dir`` when its ``config.yaml`` asks for another
    recipe than ``config`` (so a changed preset never returns a stale checkpoint): one
    :class:`ConfigError` naming the folder and the first differing keys. Nothing to check when the
    folder holds no config yet."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    try:  # through the dataclass: keys added since the run take their defaults
        saved = to_dict(from_dict(type(config), load_yaml(saved_path)))
    except (ConfigError, OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{saved_path}: cannot be read as this version's config ({err})") from err
    wanted = yaml.safe_load(yaml.safe_dump(to_dict(config)))  # the form config.yaml is written in
    differences = recipe_differences(saved, wanted)
    if differences:
        shown = "; ".join(differences[:3]) + (
            f"; and {len(differences) - 3} more" if len(differences) > 3 else ""
        )
        raise ConfigError(
            f"{run_dir} holds a run of another recipe ({shown}): move or delete it to train this one"
        )


def _ood_pool(root: Path, quiet: bool) -> bool:
    """Whether the corpus has the out-of-domain pool, built now when it lacks it (a corpus built
    before the pool existed); False, with a line saying why, when its sources are not installed."""
    from gradw.data.corpora.synthvox.build import add_pool, pool_ready
    from gradw.data.corpora.synthvox.presets import SynthvoxError

    if pool_ready(root, OOD_POOL):
        return True
    _log(f"building the out-of-domain test pool in {root / 'augment' / OOD_POOL}", quiet)
    try:
        add_pool(root, OOD_POOL, quiet=quiet)
    except SynthvoxError as exc:
        _log(f"no out-of-domain evaluation: {exc}", quiet)
        return False
    return True


def _evaluate_in_processes(
    evaluation: EvaluationConfig, out: Path, nproc: int, quiet: bool, name: str = "evaluate.yaml"
) -> None:
    """Run the evaluation under torchrun on this machine: its config goes through a YAML file."""
    import socket

    config_file = out / name
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_file, yaml.safe_dump({"evaluate": to_dict(evaluation)}, sort_keys=False))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={port}",
        "-m",
        "gradw",
        "evaluate",
        "--config",
        str(config_file),
        *(["--quiet"] if quiet else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        raise TrainingError(f"the evaluation under torchrun failed (exit {result.returncode})")


def _available_peers(peers: list[str], quiet: bool) -> list[str]:
    from gradw.evaluation.peers import available_peers

    available = available_peers()
    chosen = []
    for peer in peers:
        if available.get(peer):
            chosen.append(peer)
        else:
            _log(f"peer {peer} is not installed: skipped (pip install 'gradw[peers]')", quiet)
    return chosen
