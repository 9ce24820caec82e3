"""scripts/recipe_search.py: seeds in run names, the choice on validation, the success criteria."""

import math
from pathlib import Path

import pytest
from helpers import load_script

from gradw.data.dirs import write_speech_dir
from gradw.evaluation.report.tables import mean_eer_at_low_snr
from gradw.evaluation.results import Row


@pytest.fixture(scope="module")
def experiments():
    return load_script("recipe_search")


def _row(system: str, condition: str, eer: float, diff: tuple[float, float] | None = None) -> Row:
    category, _, snr = condition.partition("_")
    metrics = {"eer": eer}
    if diff is not None:
        metrics.update(eer_diff_low=diff[0], eer_diff_high=diff[1])
    return Row(system, condition, category, float(snr) if snr else None, False, metrics)


def _rows(system: str, eers: dict[str, float], diffs: dict[str, tuple[float, float]]) -> list[Row]:
    return [_row(system, c, e, diffs.get(c)) for c, e in eers.items()]


NOISY = {"clean": 1.0, "noise_0": 10.0, "noise_-5": 20.0, "music_0": 10.0, "music_-5": 20.0, "babble_0": 30.0}


def test_seed_suffixes(experiments):
    assert experiments.split_seed("demo-gradw-norm") == ("demo-gradw-norm", 0)
    assert experiments.split_seed("demo-gradw-norm-s2") == ("demo-gradw-norm", 2)
    assert experiments.split_seed("not-a-variant-s2") == ("not-a-variant-s2", 0)


def test_low_snr_means_and_the_choice(experiments):
    rows = _rows("noisy", NOISY, {})
    rows += _rows("demo-gradw-norm", {c: e - 3 for c, e in NOISY.items()}, {})
    rows += _rows("demo-gradw-norm-s1", {c: e - 1 for c, e in NOISY.items()}, {})
    rows += _rows("demo-gradw-norm-floor", {c: e - 4 for c, e in NOISY.items()}, {})  # one seed only
    rows += _rows("demo-equalw", {c: e - 5 for c, e in NOISY.items()}, {})
    rows += _rows("demo-equalw-s1", {c: e - 5 for c, e in NOISY.items()}, {})
    rows += _rows("demo-gradw-norm+fuse", {c: e - 6 for c, e in NOISY.items()}, {})
    means = mean_eer_at_low_snr(rows, ("noise", "music"))  # the report's function, used by the script
    assert means["noisy"] == pytest.approx(15.0) and means["demo-gradw-norm"] == pytest.approx(12.0)
    groups = experiments.variant_means(rows)
    assert groups["demo-gradw-norm"] == pytest.approx({0: 15.0, 1: 17.0})  # (10+20+10+20+30)/5 - 3, - 1
    # the rule: a Grad-W recipe with two seeds; Equal-W, single seeds and fused rows are not candidates
    assert experiments.choose(groups) == "demo-gradw-norm"
    assert experiments.is_gradient_recipe("demo-gradw-norm")
    assert not experiments.is_gradient_recipe("demo-equalw")
    text = "\n".join(experiments.choice_section(rows, []))
    assert "Chosen on validation: **demo-gradw-norm**." in text
    assert "| 1 | demo-gradw-norm+fuse | 1 | 12.00 | – | -33.3 |" in text
    assert "| 2 | demo-equalw | 2 | 13.00 | 0.00 | -27.8 |" in text
    assert "| 4 | demo-gradw-norm | 2 | 16.00 | 1.41 | -11.1 |" in text
    gap = "the gap to the chosen recipe is -4.00 points"
    assert f"Ranked first: demo-gradw-norm+fuse (1 seed(s)); {gap}." in text
    single = [r for r in rows if r.system != "demo-gradw-norm-s1"]
    assert "nothing is chosen" in "\n".join(experiments.choice_section(single, []))


def test_scale_section_fits_the_speaker_curve(experiments, tmp_path: Path):
    (tmp_path / "x.wav").write_bytes(b"")  # never read: speakers come from the lists
    write_speech_dir(
        tmp_path / "train",
        {f"u{i}": tmp_path / "x.wav" for i in range(48)},
        {f"u{i}": f"s{i}" for i in range(48)},
    )
    eer = {12: 20.0, 24: 18.0, 48: 16.0}  # -2 points per doubling, exactly
    rows = _rows("noisy", NOISY, {})
    for name, n in (("demo-gradw-norm-spk12", 12), ("demo-gradw-norm-spk24", 24), ("demo-gradw-norm", 48)):
        rows += _rows(name, {c: (e if c == "clean" else eer[n]) for c, e in NOISY.items()}, {})
    fit = experiments.log_fit([(12, 20.0), (24, 18.0), (48, 16.0)])
    assert fit == pytest.approx((20 + 2 * math.log2(12), -2))
    text = "\n".join(experiments.scale_section(rows, tmp_path, tmp_path / "runs"))
    assert "| 12 | 1 | 20.00 | 20.00 |" in text and "| 48 | 1 | 16.00 | 16.00 |" in text
    assert "-2.00 points per doubling over all noisy conditions, -2.00 over noise and music" in text
    want = 16.0 - 2 * math.log2(5994 / 48)
    assert f"5,994 VoxCeleb2 speakers: {want:.1f} %" in text
    assert "training steps" not in text  # an axis with one point is left out


def test_success_criteria_are_computed_not_assumed(experiments):
    good = {c: 0.6 * e for c, e in NOISY.items()}
    good["clean"] = 1.4  # +0.4 points: allowed
    sure = {c: (-9.0, -1.0) for c in ("noise_0", "noise_-5", "music_0")}
    rows = _rows("noisy", NOISY, {}) + _rows("v", good, sure)
    text = "\n".join(experiments.success_section(rows, "v"))
    assert "- met: mean EER over noise and music <= 0 dB at least 30 % below noisy's: -40.0 %" in text
    assert "- met: paired interval excludes 0 (better) in at least half of those 4 conditions: 3" in text
    assert (
        "- met: babble not worse" in text
        and "- met: clean EER at most 0.5 points above noisy's: +0.40" in text
    )
    bad = {**good, "clean": 2.0, "noise_0": 14.0}  # noise and music: (14 + 12 + 6 + 12) / 4 = 11 vs 15
    rows = _rows("noisy", NOISY, {}) + _rows("v", bad, {"babble_0": (1.0, 4.0)})
    text = "\n".join(experiments.success_section(rows, "v"))
    assert "- **not met**: mean EER over noise and music <= 0 dB at least 30 % below noisy's: -26.7 %" in text
    assert (
        "- **not met**: paired interval excludes 0 (better) in at least half of those 4 conditions: 0" in text
    )
    assert "- **not met**: babble not worse than noisy (no paired interval above 0): babble_0 worse" in text
    assert "- **not met**: clean EER at most 0.5 points above noisy's: +1.00" in text


def test_score_distributions_come_from_the_score_files(experiments, tmp_path: Path):
    folder = tmp_path / "scores" / "v"
    folder.mkdir(parents=True)
    (folder / "noise_-10.txt").write_text(
        "a b 0.9 target\na c 0.7 target\nb c 0.2 nontarget\nc d 0.4 nontarget\n"
    )
    rows = [_row("v", "noise_-10", 10.0), _row("v", "clean", 1.0)]
    text = "\n".join(experiments.score_section(tmp_path, rows, ("noise_-10", "clean")))
    # means 0.8 and 0.3, variances 0.01 and 0.01: d' = 0.5 / 0.1 = 5
    assert "| v | 0.800 / 0.300 / 5.00 | – |" in text


def test_curve_table_reads_the_training_logs(experiments, tmp_path: Path):
    import json

    for name, eers in (("a", {200: 19.0, 400: 17.5}), ("b", {200: 18.0})):
        (tmp_path / name).mkdir()
        records = [{"kind": "train", "step": 10, "loss": 1.0, "time": 90.0}]
        records += [{"kind": "val", "step": s, "eer": e, "eer_noisy": 20.5} for s, e in eers.items()]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = "\n".join(experiments.curve_table(tmp_path, ["a", "b"]))
    assert "| a | 1.5 | 20.50 | 19.00 | 17.50 |" in text and "| b | 1.5 | 20.50 | 18.00 | – |" in text


def test_run_names_and_the_reproduce_command(experiments):
    names = experiments.run_names("demo-gradw-norm,demo-equalw-s1", [0, 2])
    assert names == ["demo-gradw-norm", "demo-gradw-norm-s2", "demo-equalw-s1"]
    with pytest.raises(ValueError, match="unknown variants: nope"):
        experiments.run_names("demo-gradw-norm,nope", [0])
    cmd = experiments.reproduce_command(["a", "b"], ["a"], ["a", "b"])
    assert cmd == "python scripts/recipe_search.py --variants a,b --fuse --test --test-variants a"
    cmd = experiments.reproduce_command(["a", "b"], ["a", "b"], ["b"])
    assert cmd == "python scripts/recipe_search.py --variants a,b --fuse b --test"
    assert experiments.reproduce_command(["a"], [], []) == "python scripts/recipe_search.py --variants a"


def test_the_first_criterion_is_given_for_every_seed(experiments):
    rows = _rows("noisy", NOISY, {})
    rows += _rows("v-demo", NOISY, {})  # not a variant: ignored
    rows += _rows("demo-gradw-norm", {c: 0.9 * e for c, e in NOISY.items()}, {})
    rows += _rows("demo-gradw-norm-s1", {c: 0.7 * e for c, e in NOISY.items()}, {})
    text = "\n".join(experiments.seed_success_line(rows, "demo-gradw-norm"))
    assert "s0: -10.0 %, s1: -30.0 %; mean over the 2 seeds -20.0 %" in text
    assert experiments.seed_success_line(rows[:-6], "demo-gradw-norm") == []  # one seed: no line


def test_training_curves_group_seeds_by_variant_with_the_legend_outside(experiments, tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    import json

    variant = next(iter(experiments.VARIANTS))
    names = [variant, f"{variant}-s1"]
    for k, name in enumerate(names):
        (tmp_path / name).mkdir()
        lines = [{"kind": "train", "step": s, "loss": 1.0 / s + k} for s in (10, 20)]
        lines += [{"kind": "val", "step": 20, "eer": 10.0 + k, "eer_noisy": 12.0}]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        path = experiments.curves(tmp_path, names, tmp_path / "curves.svg")
    text = path.read_text(encoding="utf-8")
    assert f"{variant}, seed 0" in text and f"{variant}, seed 1" in text
    assert experiments.curves(tmp_path, names, tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
