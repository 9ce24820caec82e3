"""Typed configs: presets, overrides, errors that name the key."""

from pathlib import Path

import pytest

from gradw.config import (
    AdaptConfig,
    ConfigError,
    SpeakerTrainConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    save_config,
    to_dict,
)


def test_overrides_are_parsed_as_yaml_and_typed():
    config = load_config(
        TrainConfig,
        None,
        ["loss.scheme=equal", "loss.temperature=0.5", "enhancer.blocks=[1,1,1,1]", "seed=3"],
    )
    assert config.loss.scheme == "equal"
    assert config.loss.temperature == 0.5
    assert config.enhancer.blocks == (1, 1, 1, 1)
    assert config.seed == 3


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(TrainConfig, None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ConfigError, match="optim.steps"):
        load_config(TrainConfig, None, ["optim.steps=1.5"])


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="loss.schem"):
        load_config(TrainConfig, None, ["loss.schem=equal"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(TrainConfig, None, ["loss.scheme"])


def test_optional_and_tuple_fields():
    config = load_config(TrainConfig, None, ["enhancer.init_bias=4", "data.snr.noise=[-5, 5]"])
    assert config.enhancer.init_bias == 4.0
    assert config.data.snr.noise == (-5.0, 5.0)
    assert load_config(TrainConfig, None, ["enhancer.init_bias=null"]).enhancer.init_bias is None
    with pytest.raises(ConfigError, match="data.snr.noise"):
        load_config(TrainConfig, None, ["data.snr.noise=[1, 2, 3]"])


def test_round_trip_through_yaml(tmp_path: Path):
    config = load_config(
        TrainConfig, None, ["loss.scheme=gradw-norm", "data.category_probs={noise: 0.5, music: 0.5}"]
    )
    save_config(config, tmp_path / "c.yaml")
    again = load_config(TrainConfig, str(tmp_path / "c.yaml"))
    assert again == config
    assert to_dict(again)["data"]["category_probs"] == {"noise": 0.5, "music": 0.5}


def test_every_shipped_preset_loads():
    presets = sorted((Path(__file__).resolve().parents[1] / "src" / "gradw" / "configs").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"tiny", "demo", "paper"}
    for preset in presets:
        train = load_config(TrainConfig, str(preset), section="train")
        assert train.optim.steps > 0
        speaker = load_config(SpeakerTrainConfig, str(preset), section="train_speaker")
        assert speaker.optim.steps > 0


def test_missing_preset_and_section(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config(TrainConfig, "no-such-preset")
    path = tmp_path / "x.yaml"
    path.write_text("train: {seed: 1}\n")
    with pytest.raises(ConfigError, match="no section"):
        load_config(TrainConfig, str(path), section="evaluate")


def test_apply_overrides_does_not_mutate_input():
    data = {"loss": {"scheme": "gradw"}}
    merged = apply_overrides(data, ["loss.scheme=equal"])
    assert data["loss"]["scheme"] == "gradw" and merged["loss"]["scheme"] == "equal"
    assert from_dict(TrainConfig, merged).loss.scheme == "equal"


@pytest.mark.parametrize(
    "section, override",
    [
        ("train", "optim.lr=-0.001"),
        ("train", "optim.lr=0"),
        ("train", "optim.batch_size=0"),
        ("train", "optim.batch_size=-4"),
        ("train", "optim.steps=0"),
        ("train", "optim.steps=-5"),
        ("train", "optim.warmup_steps=-1"),
        ("train", "enhancer.base_width=0"),
        ("train", "enhancer.blocks=[]"),
        ("train", "enhancer.min_gain_db=3"),
        ("train", "data.crop_seconds=0"),
        ("train", "data.clean_fraction=1.5"),
        ("train", "data.reverb_prob=-0.1"),
        ("train", "data.snr.noise=[0,-10]"),
        ("train", "data.snr.babble_talkers=[0,3]"),
        ("train", "loss.temperature=0"),
        ("train", "loss.keep_weight=-1"),
        ("train", "validation.every=-2"),
        ("train", "checkpoint_every=0"),
        ("train", "log_every=0"),
        ("train", "seed=-1"),
        ("train", "threads=-3"),
        ("train", "out_dir="),
        ("train_speaker", "augment_prob=2"),
        ("train_speaker", "aam.scale=0"),
        ("adapt", "adapter.alpha=0"),
        ("adapt", "loss.consistency_weight=-1"),
        ("adapt", "loss.relation_weight=-0.5"),
        ("train", "data.noise_colour.prob=1.5"),
        ("train", "data.noise_colour.tilt_db=-1"),
        ("adapt", "data.noise_colour.bands=-1"),
        ("adapt", "joint.lr=0"),
        ("adapt", "joint.objective_weight=-1"),
        ("adapt", "joint.loss.temperature=0"),
        ("adapt", "joint.enhancer.base_width=0"),
        ("evaluate", "n_boot=0"),
        ("evaluate", "max_trials=1"),
        ("evaluate", "save_every=0"),
        ("evaluate", "window_seconds=0.5"),
        ("demo", "eval_processes=0"),
    ],
)
def test_a_value_out_of_range_is_one_error_naming_key_value_and_range(section: str, override: str) -> None:
    from gradw.config import SECTIONS

    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError) as caught:
        if section == "evaluate":  # no preset has an evaluate section: the flags fill it
            load_config(SECTIONS[section], None, [override])
        else:
            load_config(SECTIONS[section], "tiny", [override], section=section)
    message = str(caught.value)
    assert message.startswith(f"{key}: must be ") and ", got " in message and "\n" not in message


def test_the_cli_reports_a_range_error_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gradw", "train", "--config", "tiny", f"out_dir={tmp_path / 'run'}",
         "optim.lr=-1"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "gradw: error: optim.lr: must be a number > 0, got -1.0\n"
    assert list(tmp_path.iterdir()) == []


def test_overrides_keep_the_order_of_every_mapping() -> None:
    from gradw.config import apply_overrides

    data = {"variants": {"gradw": [], "equalw": ["loss.scheme=equal"], "alpha": []}, "n_boot": 5}
    merged = apply_overrides(data, ["n_boot=7"])
    assert list(merged["variants"]) == ["gradw", "equalw", "alpha"] and merged["n_boot"] == 7
    assert data["n_boot"] == 5  # the input is not changed


def test_every_range_rule_names_a_real_section_and_field() -> None:
    """A rule under a misspelt class or field name would check nothing: none may exist."""
    import dataclasses

    import gradw.config
    from gradw.config_ranges import RULES

    for section, fields in RULES.items():
        cls = getattr(gradw.config, section)
        assert dataclasses.is_dataclass(cls), section
        assert set(fields) <= {f.name for f in dataclasses.fields(cls)}, section
    assert set(RULES) >= {cls.__name__ for cls in gradw.config.SECTIONS.values()}


def test_data_root_moves_every_corpus_path_of_a_section() -> None:
    here = load_config(TrainConfig, "demo", section="train")
    assert here.data.train == "data/synthvox-demo/train"
    assert here.data.val_augment == "data/synthvox-demo/augment/val"
    moved = load_config(TrainConfig, "demo", ["data.root=/mnt/corpus/", "optim.steps=3"], section="train")
    assert (moved.data.train, moved.data.augment, moved.data.val, moved.data.val_augment) == (
        "/mnt/corpus/train",
        "/mnt/corpus/augment/train",
        "/mnt/corpus/val",
        "/mnt/corpus/augment/val",
    )
    assert moved.optim.steps == 3 and moved.out_dir == here.out_dir  # nothing else moves
    speaker = load_config(SpeakerTrainConfig, "demo", ["data.root=/c"], section="train_speaker")
    assert (speaker.train, speaker.augment) == ("/c/train", "/c/augment/train")
    adapt = load_config(AdaptConfig, "demo", ["data.root=/c"], section="adapt")
    assert adapt.data.val == "/c/val"
    paper = load_config(TrainConfig, "paper", ["data.root=/vox"], section="train")
    assert (paper.data.train, paper.data.val) == ("/vox/vox2_dev", "/vox/vox2_val")
    assert paper.data.augment == "data/augment/train"  # MUSAN/RIRS are not under the VoxCeleb root


def test_data_root_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.root=/x: section train of .* names no path under"):
        load_config(TrainConfig, None, ["data.root=/x"], section="train")
    preset = tmp_path / "mine.yaml"
    preset.write_text("train:\n  data:\n    train: ${data.root}/train\n")
    with pytest.raises(ConfigError, match=r"refers to \$\{data.root\}, but no data.root is set"):
        load_config(TrainConfig, str(preset), section="train")
    mine = load_config(TrainConfig, str(preset), ["data.root=here"], section="train")
    assert mine.data.train == "here/train"
    with pytest.raises(ConfigError, match="give a folder"):
        load_config(TrainConfig, str(preset), ["data.root="], section="train")


def test_gradw_config_prints_the_moved_paths(capsys: pytest.CaptureFixture[str]) -> None:
    from gradw.cli.main import main

    assert main(["config", "--config", "tiny", "--section", "train", "data.root=/elsewhere"]) == 0
    out = capsys.readouterr().out
    assert "/elsewhere/train" in out and "/elsewhere/augment/val" in out and "${data.root}" not in out
