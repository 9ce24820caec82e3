"""Calibrating a selected checkpoint (gradw.training.calibrate) on the toy corpus's validation
speakers: what is stored, the in-place update that changes nothing else, the refusals."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import make_adapted_checkpoint, make_enhancer_checkpoint, make_speaker_checkpoint

from gradw.checkpoint import CheckpointError
from gradw.config import ConfigError, TrainConfig, from_dict
from gradw.data.lists import DataError
from gradw.evaluation.calibration import Calibration
from gradw.evaluation.systems import load_system, parse_system
from gradw.models.loading import load_speaker_network, weights_identity
from gradw.runlock import RunLock, RunLockError
from gradw.training.calibrate import calibrate_checkpoint, calibration_request, needs_calibration

CPU = torch.device("cpu")


def _config(corpus: Path, **calibration: Any) -> TrainConfig:
    grid = {"categories": ["clean", "noise", "babble"], "snrs": [0, -10], "max_trials": 200, **calibration}
    data = {"val": str(corpus / "val"), "val_augment": str(corpus / "augment" / "test")}
    return from_dict(TrainConfig, {"data": data, "calibration": grid})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calibrate")
    e = make_speaker_checkpoint(root / "e.pt")
    return {"root": root, "e": e, "g": make_enhancer_checkpoint(root / "g.pt", speaker_checkpoint=str(e))}


def _equal(a: Any, b: Any) -> bool:
    """Equal as torch.load returns them: tensors byte for byte (and dtype, shape), the rest by value."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.numpy().tobytes() == b.numpy().tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(a == b) and type(a) is type(b)


def test_a_copy_holds_the_calibration_and_the_input_is_untouched(
    toy_corpus: Path, inputs: dict[str, Path]
) -> None:
    config = _config(toy_corpus)
    before = inputs["g"].read_bytes()
    assert needs_calibration(inputs["g"], config)
    out = inputs["root"] / "copy" / "g.pt"
    out.parent.mkdir()
    calibration = calibrate_checkpoint(inputs["g"], config, out)
    assert inputs["g"].read_bytes() == before
    stored = Calibration.from_dict(torch.load(out, weights_only=True)["extra"]["calibration"])
    assert stored == calibration
    assert stored.measures == ("snr_percentile",) and len(stored.quality_weights) == 4
    assert stored.extra["conditions"] == ["clean", "noise_0", "noise_-10", "babble_0", "babble_-10"]
    assert stored.extra["scorer"] == weights_identity("resnet-tiny", str(inputs["e"]))
    assert stored.extra["request"] == calibration_request(config)
    assert stored.fitted_on.startswith("validation: 3 speakers, 66 trials x 5 conditions")
    assert not needs_calibration(out, config)
    assert needs_calibration(out, _config(toy_corpus, snrs=[0]))  # another grid asked for
    assert needs_calibration(out, _config(toy_corpus, quality=[]))  # no quality asked for
    # the evaluation applies it when scoring with the E it was fitted with
    scorer = load_speaker_network("resnet-tiny", checkpoint=inputs["e"], tap="layer4")
    scorer_id = f"{weights_identity('resnet-tiny', str(inputs['e']))}|layer4"
    system = load_system(parse_system(f"g:{out}"), scorer, scorer_id, CPU)
    assert system.calibration == stored
    # ... and the embeddings it cached for the uncalibrated file stay valid: the weights are the same
    assert system.identity == load_system(parse_system(f"g:{inputs['g']}"), scorer, scorer_id, CPU).identity


def test_a_validation_split_rebuilt_in_place_asks_for_a_new_calibration(
    toy_corpus: Path, inputs: dict[str, Path]
) -> None:
    """The request holds a digest of the validation lists: the same path with other trials (a
    corpus rebuilt with other validation speakers) makes the stored calibration stale."""
    root = inputs["root"] / "rebuilt"
    shutil.copytree(toy_corpus / "val", root / "val")
    grid = {"categories": ["clean", "noise"], "snrs": [0], "max_trials": 200}
    data = {"val": str(root / "val"), "val_augment": str(toy_corpus / "augment" / "test")}
    config = from_dict(TrainConfig, {"data": data, "calibration": grid})
    assert calibration_request(config)["val_lists"] == calibration_request(_config(toy_corpus))["val_lists"]
    out = root / "g.pt"
    calibrate_checkpoint(inputs["g"], config, out)
    assert not needs_calibration(out, config)
    trials = root / "val" / "trials"
    trials.write_text("".join(trials.read_text().splitlines(keepends=True)[1:]))
    assert calibration_request(config)["val_lists"] != calibration_request(_config(toy_corpus))["val_lists"]
    assert needs_calibration(out, config)


def test_in_place_only_the_calibration_entry_changes(toy_corpus: Path, inputs: dict[str, Path]) -> None:
    path = inputs["root"] / "in-place" / "best.pt"
    path.parent.mkdir()
    path.write_bytes(inputs["g"].read_bytes())
    before = torch.load(path, weights_only=True)
    calibrate_checkpoint(path, _config(toy_corpus, quality=[]))
    after = torch.load(path, weights_only=True)
    assert list(after) == list(before) and list(after["extra"]) == [*before["extra"], "calibration"]
    for key in before:
        if key != "extra":
            assert _equal(before[key], after[key]), key
    for key in before["extra"]:
        assert _equal(before["extra"][key], after["extra"][key]), key
    plain = Calibration.from_dict(after["extra"]["calibration"])
    assert plain.measures == () and plain.score_threshold() == pytest.approx(
        (0.0 - plain.offset) / plain.scale
    )
    # again, with quality: the entry replaced, the rest still as it was
    calibrate_checkpoint(path, _config(toy_corpus))
    again = torch.load(path, weights_only=True)
    assert Calibration.from_dict(again["extra"]["calibration"]).measures == ("snr_percentile",)
    for key in before:
        if key != "extra":
            assert _equal(before[key], again[key]), key
    assert not list(path.parent.glob(".*")), "a temporary file or a lock was left behind"
    buffer = io.BytesIO()
    torch.save(again, buffer)  # still a plain, weights-only checkpoint
    assert torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)["kind"] == "enhancer"


def test_an_adapted_checkpoint_is_calibrated_with_its_own_student(
    toy_corpus: Path, inputs: dict[str, Path]
) -> None:
    adapted = make_adapted_checkpoint(
        inputs["root"] / "adapted" / "best.pt", base=inputs["e"], enhancer=inputs["g"]
    )
    calibration = calibrate_checkpoint(adapted, _config(toy_corpus))
    assert "scorer" not in calibration.extra  # its student scores: no other E to match
    scorer = load_speaker_network("resnet-tiny", checkpoint="random")  # not used by an adapted system
    system = load_system(parse_system(f"a:{adapted}"), scorer, "other", CPU)
    assert system.calibration == calibration


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"categories": ["thunder"]}, ConfigError, "calibration.categories"),
        ({"quality": ["loudness"]}, ConfigError, "calibration.quality: unknown quality measure"),
        ({"quality": [], "clip": {"snr_wada": [0, 1]}}, ConfigError, "calibration.clip"),
        (
            {"quality": ["seconds"], "clip": {"snr_wada": [0, 1]}},
            ConfigError,
            "calibration.clip: a range for snr_wada",
        ),
        (
            {"quality": ["seconds"], "clip": {"seconds": [0, 1]}},
            ConfigError,
            "calibration.clip: .*bad clip range",
        ),
        ({"categories": ["noise"], "snrs": []}, ConfigError, "calibration.snrs"),
    ],
)
def test_a_bad_calibration_section_is_refused_before_any_work(
    toy_corpus: Path, inputs: dict[str, Path], override: dict, error: type, message: str
) -> None:
    out = inputs["root"] / "never.pt"
    with pytest.raises(error, match=message):
        calibrate_checkpoint(inputs["g"], _config(toy_corpus, **override), out)
    assert not out.exists()


def test_bad_inputs_and_outputs_are_refused(
    toy_corpus: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    config = _config(toy_corpus)
    with pytest.raises(ConfigError, match="is an input of the calibration"):
        calibrate_checkpoint(inputs["g"], config, inputs["e"])  # E's weights
    with pytest.raises(ConfigError, match="is a folder"):
        calibrate_checkpoint(inputs["g"], config, tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        calibrate_checkpoint(inputs["g"], config, tmp_path / "afile" / "g.pt")
    with pytest.raises(CheckpointError, match="speaker model"):
        calibrate_checkpoint(inputs["e"], config, tmp_path / "e.pt")
    no_val = from_dict(TrainConfig, {})
    with pytest.raises(ConfigError, match="data.val"):
        calibrate_checkpoint(inputs["g"], no_val, tmp_path / "g.pt")
    no_music = from_dict(TrainConfig, {"data": {"val": str(toy_corpus / "val"), "augment": str(tmp_path)}})
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "wav.scp").write_text(
        (toy_corpus / "augment" / "test" / "noise" / "wav.scp").read_text()
    )
    with pytest.raises(DataError, match="music"):
        calibrate_checkpoint(inputs["g"], no_music, tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_in_place_waits_for_no_run(toy_corpus: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "run" / "best.pt"
    path.parent.mkdir()
    path.write_bytes(inputs["g"].read_bytes())
    before = path.read_bytes()
    lock = RunLock(path.parent, "training").acquire()
    try:
        with pytest.raises(RunLockError, match="training"):
            calibrate_checkpoint(path, _config(toy_corpus))
    finally:
        lock.release()
    assert path.read_bytes() == before
