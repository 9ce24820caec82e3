"""The recipe test: ``gradw demo`` on the tiny preset, end to end, as a user runs it: on a corpus
built before the out-of-domain test pool existed, which the demo builds, then evaluates apart."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import strip_ood_pool

from gradw.checkpoint import load_checkpoint
from gradw.config import (
    AdaptConfig,
    ConfigError,
    DemoConfig,
    apply_overrides,
    from_dict,
    load_config,
    load_yaml,
    preset_path,
    save_config,
)
from gradw.data.corpora.synthvox.build import pool_ready
from gradw.data.corpora.synthvox.presets import OOD_POOL
from gradw.demo import check_same_recipe, evaluation_runs, recipe_differences, run_demo
from gradw.evaluation.calibration import Calibration, threshold_record
from gradw.evaluation.report.document import threshold_sentence
from gradw.evaluation.scoring import read_scores

pytestmark = pytest.mark.filterwarnings("ignore:.*speaker resamples lacked:RuntimeWarning")


def test_tiny_demo_trains_evaluates_and_reports(
    synthvox_tiny: tuple[Path, dict, float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    built, summary, _seconds = synthvox_tiny
    if OOD_POOL not in summary["augment"]:
        pytest.skip(
            "the out-of-domain pool's packages are missing: run `sudo scripts/install-system-deps.sh tiny`"
        )
    corpus = tmp_path / "corpus"  # a corpus as built before the out-of-domain pool existed
    shutil.copytree(built, corpus, symlinks=True)
    strip_ood_pool(corpus)
    monkeypatch.chdir(tmp_path)  # the preset's paths are relative to the working folder
    grid = ["snrs=[0]"]  # the preset's grid less one SNR: the same stages in less time
    demo = from_dict(DemoConfig, apply_overrides(load_yaml(preset_path("tiny"))["demo"], grid), "demo.")
    assert demo.snrs == [0.0] and demo.variants and demo.peers and demo.ood and demo.ood_snrs is None
    assert demo.students and demo.shipped in demo.students
    overrides = [*grid, f"data.root={corpus}"]  # the corpus built elsewhere: one override moves it

    report = run_demo("tiny", quiet=True, overrides=overrides)
    # the shipped system is named with its checkpoint (the student's: the tiny preset validates
    # no student, so its last checkpoint)
    shipped = tmp_path / demo.out / demo.shipped / "last.pt"
    assert f"the shipped system: {demo.shipped} ({Path(demo.out) / demo.shipped / 'last.pt'})" in (
        capsys.readouterr().out
    )
    assert load_checkpoint(shipped, kind="adapted")["step"] > 0
    assert not (tmp_path / "data").exists()  # nothing was built in the preset's own data folder
    assert pool_ready(corpus)  # the demo built the pool the corpus lacked
    for name in demo.variants:
        saved = load_yaml(tmp_path / demo.out / name / "config.yaml")
        assert saved["data"]["train"] == f"{corpus}/train"
        assert saved["data"]["val_augment"] == f"{corpus}/augment/val"

    out = tmp_path / demo.out
    assert report.resolve() == out / "eval" / "report.md"
    assert "## " in report.read_text()
    # every variant and student trained to its last step, with a readable checkpoint
    for name, kind in [*((n, "enhancer") for n in demo.variants), *((n, "adapted") for n in demo.students)]:
        done = json.loads((out / name / "done.json").read_text())
        state = load_checkpoint(out / name / "last.pt", kind=kind)
        assert state["step"] == done["steps"] > 0
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    results = json.loads((out / "eval" / "results.json").read_text())
    assert not demo.peers_in_domain  # the peers run on the out-of-domain test only
    systems = ["noisy", *demo.variants, *demo.students]
    conditions = ["clean", *(f"{c}_{s:g}" for c in demo.categories for s in demo.snrs)]
    assert sorted((r["system"], r["condition"]) for r in results["rows"]) == sorted(
        (s, c) for s in systems for c in conditions
    )
    # the variants run, and are reported, in the order the preset lists them
    assert list(dict.fromkeys(r["system"] for r in results["rows"])) == systems
    for row in results["rows"]:
        assert 0.0 <= row["metrics"]["eer"] <= 100.0  # percent
        enroll, test, scores, labels = read_scores(
            out / "eval" / "scores" / row["system"] / f"{row['condition']}.txt"
        )
        assert len(scores) == len(labels) == len(enroll) == len(test) > 0
    # the selected checkpoints carry the calibration fitted on validation, which the evaluation
    # applies (E is the one they were trained against): Cllr, the actual DCF, the threshold
    for name in demo.variants:
        best = load_checkpoint(out / name / "best.pt", kind="enhancer")
        calibration = Calibration.from_dict(best["extra"]["calibration"])
        assert calibration.fitted_on.startswith("validation: 2 speakers")
        assert calibration.extra["conditions"] == ["clean", "noise_0"]  # the preset's calibration grid
        assert calibration.measures == ("snr_percentile",)  # quality-aware: the threshold moves
        recorded = results["calibration"][name]
        assert recorded["threshold"] is None
        assert recorded["thresholds_by_snr"] == pytest.approx(
            threshold_record(calibration)["thresholds_by_snr"]
        )
        rows = [r for r in results["rows"] if r["system"] == name]
        assert all(r["metrics"]["min_cllr"] <= r["metrics"]["cllr"] + 1e-9 for r in rows)
        assert all("act_dcf_0.01" in r["metrics"] for r in rows)
    assert all("cllr" not in r["metrics"] for r in results["rows"] if r["system"] == "noisy")
    text = report.read_text()
    assert (
        "## Calibration" in text
        and threshold_sentence(next(iter(demo.variants)), results["calibration"][next(iter(demo.variants))])
        in text
    )

    # the out-of-domain evaluation: the same systems and conditions on augment/test-ood, apart
    ood = json.loads((out / "eval-ood" / "results.json").read_text())
    assert ood["config"]["augment"] == str(corpus / "augment" / OOD_POOL)
    assert results["config"]["augment"] == str(corpus / "augment" / "test")
    assert "## " in (out / "eval-ood" / "report.md").read_text()
    assert sorted((r["system"], r["condition"]) for r in ood["rows"]) == sorted(
        (s, c) for s in [*systems, *demo.peers] for c in conditions
    )
    by_run = [{(r["system"], r["condition"]): r["metrics"] for r in run["rows"]} for run in (results, ood)]
    for system in systems:  # clean speech is the same test; the noisy conditions are not
        assert by_run[0][(system, "clean")]["eer"] == by_run[1][(system, "clean")]["eer"]
    for condition in conditions[1:]:
        scores = [
            read_scores(out / run / "scores" / "noisy" / f"{condition}.txt")[2]
            for run in ("eval", "eval-ood")
        ]
        assert len(scores[0]) == len(scores[1]) and not np.allclose(scores[0], scores[1]), condition
    # the README's results section shows both, each under its own heading, and sets them side by side
    spec = importlib.util.spec_from_file_location(
        "readme_results", Path(__file__).parents[1] / "scripts" / "readme_results.py"
    )
    readme_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_results)
    section = readme_results.section(out / "eval", out / "eval-ood")
    assert section.index("### In-domain test (`augment/test`)") < section.index(
        f"### Out-of-domain test (`augment/{OOD_POOL}`)"
    )
    assert section.count("Mean EER over the conditions at or below 0 dB:") == 2
    assert "| system | in-domain | out-of-domain |" in section

    # a run trained before its config asked for this calibration (here: one holding a calibration
    # of the score alone, fitted for no stated request) is calibrated again, not trained again
    name = next(iter(demo.variants))
    best_path, last_path = out / name / "best.pt", out / name / "last.pt"
    state = torch.load(best_path, weights_only=True)
    wanted = state["extra"]["calibration"]
    state["extra"]["calibration"] = Calibration(scale=10.0, offset=-5.0, fitted_on="validation").to_dict()
    torch.save(state, best_path)
    last_bytes, done_bytes = last_path.read_bytes(), (out / name / "done.json").read_bytes()
    # a second run reuses every finished stage and gives the same rows
    run_demo("tiny", quiet=True, overrides=overrides)
    again = json.loads((out / "eval" / "results.json").read_text())
    assert again["rows"] == results["rows"]
    assert json.loads((out / "eval-ood" / "results.json").read_text())["rows"] == ood["rows"]
    assert torch.load(best_path, weights_only=True)["extra"]["calibration"] == wanted
    assert last_path.read_bytes() == last_bytes and (out / name / "done.json").read_bytes() == done_bytes


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("shipped=nobody", "demo.shipped: 'nobody' is neither a variant nor a student"),
        ("students={gradw: []}", "demo.students: 'gradw' is a variant's name too"),
    ],
)
def test_demo_section_names_checked_before_any_work(
    override: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run_demo("tiny", quiet=True, overrides=[override])
    assert list(tmp_path.iterdir()) == []  # nothing built, trained or locked


@pytest.mark.parametrize(
    ("peers_in_domain", "ood", "in_domain_peers"),
    [(True, True, True), (False, True, False), (False, False, True), (True, False, True)],
)
def test_peers_run_on_the_out_of_domain_test_alone_only_when_it_runs(
    peers_in_domain: bool, ood: bool, in_domain_peers: bool
) -> None:
    demo = DemoConfig(peers_in_domain=peers_in_domain, snrs=[0.0, -5.0], ood_snrs=[0.0])
    learned, peers = ["noisy", "gradw:exp/gradw/best.pt"], ["rnnoise", "spectral-gating"]
    runs = evaluation_runs(demo, learned, peers, ood)
    assert [(name, pool, snrs) for name, pool, snrs, _, _ in runs] == [
        ("eval", "test", [0.0, -5.0]),
        *([("eval-ood", OOD_POOL, [0.0])] if ood else []),
    ]
    assert runs[0][3] == (learned + peers if in_domain_peers else learned)
    if ood:  # the out-of-domain test always runs every system, noisy first
        assert runs[1][3] == learned + peers


def test_a_finished_run_of_another_recipe_is_refused_not_reused(tmp_path: Path) -> None:
    run = tmp_path / "adapted"
    config = load_config(AdaptConfig, "tiny", [f"out_dir={run}"], section="adapt")
    check_same_recipe(run, config)  # nothing saved yet: nothing to compare
    run.mkdir()
    save_config(config, run / "config.yaml")
    check_same_recipe(run, config)
    # threads, logging and the calibration request do not change what the run learned, and more
    # steps continue it
    more = f"optim.steps={config.optim.steps + 4}"
    same = load_config(
        AdaptConfig,
        "tiny",
        [f"out_dir={run}", "threads=1", "log_every=3", "calibration.snrs=[5]", more],
        section="adapt",
    )
    check_same_recipe(run, same)
    changed = load_config(
        AdaptConfig, "tiny", [f"out_dir={run}", "loss.relation_weight=1.0"], section="adapt"
    )
    message = f"{run} holds a run of another recipe (loss.relation_weight: 0.0 there, 1.0 now)"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_same_recipe(run, changed)
    # a config.yaml written before a key existed: the key takes its default there
    saved = load_yaml(run / "config.yaml")
    del saved["loss"]["relation_weight"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_recipe(run, config)
    with pytest.raises(ConfigError, match="relation_weight: 0.0 there, 1.0 now"):
        check_same_recipe(run, changed)
    # one that no longer loads is named
    (run / "config.yaml").write_text("loss: {no_such_key: 1}\n")
    with pytest.raises(ConfigError, match="config.yaml: cannot be read as this version's config"):
        check_same_recipe(run, config)


def test_recipe_differences_name_every_changed_key_and_skip_the_unlearned_ones() -> None:
    saved = {
        "seed": 0,
        "out_dir": "a",
        "threads": 2,
        "loss": {"a": 1.0, "b": [1, 2]},
        "calibration": {"snrs": [0]},
    }
    wanted = {
        "seed": 1,
        "out_dir": "b",
        "threads": 1,
        "loss": {"a": 1.0, "b": [1, 3], "c": 2},
        "calibration": {},
    }
    saved["optim"], wanted["optim"] = {"steps": 10, "lr": 0.1}, {"steps": 20, "lr": 0.2}
    assert recipe_differences(saved, wanted) == [
        "seed: 0 there, 1 now",
        "loss.b: [1, 2] there, [1, 3] now",
        "loss.c: None there, 2 now",
        "optim.lr: 0.1 there, 0.2 now",
    ]
