"""synthvox: the embedded corpus builder, exercised for real on the tiny preset.

The build tests run the actual synthesis (espeak-ng + MBROLA, Flite, procedural noise and music,
espeak-ng babble, pyroomacoustics rooms). They need the packages of
``scripts/install-system-deps.sh tiny`` and are skipped, naming that script, where they are not
installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradw.data.corpora.synthvox import build as synthvox_build
from gradw.data.corpora.synthvox import noise as synthvox_noise
from gradw.data.corpora.synthvox import plan as synthvox_plan
from gradw.data.corpora.synthvox import text as synthvox_text
from gradw.data.corpora.synthvox import voices as synthvox_voices
from gradw.data.corpora.synthvox.build import build_synthvox
from gradw.data.corpora.synthvox.presets import PRESETS, SplitSize, SynthvoxError
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError
from gradw.data.trials import make_trials, read_trials

TINY_TOOLS = ("espeak-ng", "mbrola", "flite")
needs_tiny_install = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TINY_TOOLS) or not Path("/usr/share/mbrola/us1/us1").is_file(),
    reason="synthvox needs espeak-ng, mbrola and flite: run `sudo scripts/install-system-deps.sh tiny`",
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file (the private espeak-ng folder left out)."""
    return {
        p.relative_to(root).as_posix(): (_digest(p), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


@pytest.fixture(scope="module")
def tiny(synthvox_tiny: tuple[Path, dict, float]) -> tuple[Path, dict, float]:
    return synthvox_tiny


# ---------------------------------------------------------------------------------------------
# the tiny build


@needs_tiny_install
def test_tiny_build_summary_and_manifest(tiny: tuple[Path, dict, float]) -> None:
    out, summary, elapsed = tiny
    assert elapsed < 60
    assert summary["failed"] == 0
    assert summary["speakers"] == {"train": 5, "val": 2, "test": 5}
    assert summary["utterances"] == {"train": 30, "val": 8, "test": 20}
    assert all(summary["seconds"][s] > 0 for s in ("train", "val", "test"))
    assert "flite" in summary["sources_used"] and "mbrola-us1" in summary["sources_used"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preset"] == "tiny" and manifest["seed"] == 0
    assert len(manifest["speakers"]) == 12
    assert all(s["licence"] for s in manifest["speakers"])
    assert "non-free" in manifest["licences"]["mbrola-us1"]
    header = (out / "utterances.csv").read_text().splitlines()[0]
    assert header == "utt,speaker,gender,source,lang,split,real,path,duration"


@needs_tiny_install
def test_speech_dirs_load_with_disjoint_speakers(tiny: tuple[Path, dict, float]) -> None:
    out, _, _ = tiny
    dirs = {split: SpeechDir.load(out / split) for split in ("train", "val", "test")}
    speakers = {split: set(d.speakers) for split, d in dirs.items()}
    assert not speakers["train"] & speakers["val"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]
    for d in dirs.values():
        assert d.utt2dur is not None and set(d.utt2dur) == set(d.wavs)
        assert d.spk2gender is not None and set(d.spk2gender) == set(d.speakers)
        assert all(utt.startswith(spk + "-") for utt, spk in d.utt2spk.items())
        # lists hold relative paths, so the corpus can be moved
        assert all(
            not line.split()[1].startswith("/") for line in (d.root / "wav.scp").read_text().splitlines()
        )
    assert dirs["train"].trials is None
    assert not (out / "test" / "trials_real").exists()  # no real-recording speakers in tiny


@needs_tiny_install
def test_trials_are_valid_and_balanced(tiny: tuple[Path, dict, float]) -> None:
    out, _, _ = tiny
    for split in ("val", "test"):
        d = SpeechDir.load(out / split)
        assert d.trials
        labels = [t.target for t in d.trials]
        assert any(labels) and not all(labels)
        assert abs(sum(labels) - (len(labels) - sum(labels))) <= 0.1 * len(labels)
        pairs = set()
        for t in d.trials:
            assert t.enroll in d.wavs and t.test in d.wavs and t.enroll != t.test
            assert t.target == (d.utt2spk[t.enroll] == d.utt2spk[t.test])
            pairs.add(frozenset((t.enroll, t.test)))
        assert len(pairs) == len(d.trials)


@needs_tiny_install
def test_audio_is_16k_mono_finite_and_not_silent(tiny: tuple[Path, dict, float]) -> None:
    out, _, _ = tiny
    files = sorted((out / "audio").rglob("*.flac"))
    assert len(files) > 50
    for path in files:
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == 16000 and wav.shape[1] == 1, path
        assert np.isfinite(wav).all(), path
        assert float(np.sqrt(np.mean(wav**2))) > 1e-3, path
    for d in (SpeechDir.load(out / s) for s in ("train", "val", "test")):
        assert all(0.5 < dur < 5.0 for dur in d.utt2dur.values())


@needs_tiny_install
def test_speakers_have_distinct_pitch(tiny: tuple[Path, dict, float]) -> None:
    out, _, _ = tiny
    manifest = json.loads((out / "manifest.json").read_text())
    tts = [s for s in manifest["speakers"] if not s["real"]]
    for s in tts:
        low, high = (20, 60) if s["gender"] == "m" else (35, 70)
        assert low <= s["pitch"] <= high and 140 <= s["rate_wpm"] <= 200
    assert len({round(s["pitch"], 2) for s in tts}) == len(tts)


@needs_tiny_install
def test_augment_pools_load_and_are_disjoint(tiny: tuple[Path, dict, float]) -> None:
    out, _, _ = tiny
    sides = {side: AugmentDir.load(out / "augment" / side) for side in ("train", "val", "test")}
    for category in ("noise", "music", "babble", "rirs"):
        paths = {}
        for side, pool in sides.items():
            assert pool.keys(category), (side, category)
            paths[side] = {pool.path(category, k) for k in pool.keys(category)}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert not set(sides[a].keys(category)) & set(sides[b].keys(category)), (a, b, category)
            assert not paths[a] & paths[b]
            assert not {_digest(p) for p in paths[a]} & {_digest(p) for p in paths[b]}, (a, b, category)
    for key in sides["train"].keys("rirs"):
        rir, rate = sf.read(sides["train"].path("rirs", key))
        assert rate == 16000 and np.isclose(np.abs(rir).max(), 1.0, atol=1e-3)


@needs_tiny_install
def test_rerun_is_a_fast_noop(tiny: tuple[Path, dict, float]) -> None:
    out, _, first_elapsed = tiny
    before = _snapshot(out)
    start = time.monotonic()
    summary = build_synthvox(out, preset="tiny", seed=0, jobs=2, quiet=True)
    elapsed = time.monotonic() - start
    assert summary["files_made"] == 0 and summary["files_skipped"] > 50
    assert elapsed < max(10.0, first_elapsed)
    after = _snapshot(out)
    assert set(after) == set(before)
    for name, (digest, mtime) in before.items():
        assert after[name][0] == digest, name  # same content
        if name.startswith("audio/"):
            assert after[name][1] == mtime, name  # audio not rewritten


@needs_tiny_install
def test_interrupted_build_resumes(tiny: tuple[Path, dict, float], tmp_path: Path) -> None:
    out, _, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    victims = (
        sorted((copy / "audio" / "test").rglob("*.flac"))[:3]
        + sorted((copy / "audio" / "augment").rglob("*.flac"))[:2]
    )
    for victim in victims:
        victim.unlink()
    summary = build_synthvox(copy, preset="tiny", seed=0, jobs=1, quiet=True)
    assert summary["files_made"] == len(victims) and summary["failed"] == 0
    for victim in victims:
        original = out / victim.relative_to(copy)
        a, _ = sf.read(victim)
        b, _ = sf.read(original)
        assert np.array_equal(a, b), victim  # remade exactly as before


# ---------------------------------------------------------------------------------------------
# determinism, on an even smaller preset

_MINI = dataclasses.replace(
    PRESETS["tiny"],
    name="mini",
    train=SplitSize(2, (1.5, 2.5), ("mbrola-us2", "flite-rms")),
    val=SplitSize(2, (1.5, 2.5), ("mbrola-de4", "mbrola-it4"), trials=10),
    test=SplitSize(2, (1.5, 2.5), ("mbrola-us1", "flite-awb"), trials=10),
    noise=(2, 1, 1),
    music_synth=(1, 1, 1),
    babble=(2, 2, 2),
    rirs=(2, 1, 1),
)


@needs_tiny_install
def test_same_seed_gives_identical_lists_and_other_seed_differs(tmp_path: Path) -> None:
    a = build_synthvox(tmp_path / "a", preset=_MINI, seed=3, jobs=2, quiet=True)
    b = build_synthvox(tmp_path / "b", preset=_MINI, seed=3, jobs=1, quiet=True)
    c = build_synthvox(tmp_path / "c", preset=_MINI, seed=4, jobs=1, quiet=True)
    assert a["failed"] == b["failed"] == c["failed"] == 0
    names = ["wav.scp", "utt2spk", "spk2utt", "trials", "utt2dur"]
    for split in ("train", "val", "test"):
        for name in names:
            if (tmp_path / "a" / split / name).exists():
                assert _digest(tmp_path / "a" / split / name) == _digest(tmp_path / "b" / split / name), (
                    split,
                    name,
                )
    for split_file in ("augment/train/noise/wav.scp", "augment/test/babble/wav.scp"):
        assert _digest(tmp_path / "a" / split_file) == _digest(tmp_path / "b" / split_file)
    for wav in sorted((tmp_path / "a" / "audio").rglob("*.flac")):
        assert _digest(wav) == _digest(tmp_path / "b" / wav.relative_to(tmp_path / "a")), wav
    # another seed: same speakers, other prosody and prompts
    assert (tmp_path / "a" / "test" / "utt2spk").read_text() == (
        tmp_path / "c" / "test" / "utt2spk"
    ).read_text()
    assert (tmp_path / "a" / "test" / "utt2dur").read_text() != (
        tmp_path / "c" / "test" / "utt2dur"
    ).read_text()


# ---------------------------------------------------------------------------------------------
# parts that need no synthesis


def test_catalogue_follows_the_recipe_split() -> None:
    catalogue = synthvox_voices.CATALOGUE
    assert len({s.id for s in catalogue}) == len(catalogue) == 83
    counts = {split: sum(s.split == split for s in catalogue) for split in ("train", "val", "test")}
    assert counts == {"train": 49, "val": 10, "test": 24}
    assert sum(s.real for s in catalogue) == 10
    assert {s.id for s in catalogue if s.real and s.split == "val"} == {
        "ktuberling-nn",
        "ktuberling-uk",
        "ktuberling-lt",
        "ktuberling-fr",
    }
    assert {s.id for s in catalogue if s.real and s.split == "test"} == {
        "asterisk-allison",
        "asterisk-june",
        "asterisk-carlo",
        "fillets-nl-m",
    }
    excluded = {"mbrola-hb1", "mbrola-nl1", "mbrola-nz1", "mbrola-bz1"}
    assert not excluded & {s.id for s in catalogue}
    assert all(s.gender in ("m", "f") for s in catalogue)
    for name, preset in PRESETS.items():
        for split in ("train", "val", "test"):
            for sid in preset.split(split).speakers or ():
                assert next(s for s in catalogue if s.id == sid).split == split, (name, sid)


@pytest.mark.parametrize("name", ["demo", "full"])
def test_larger_presets_plan_disjoint_pools_from_what_is_installed(name: str, tmp_path: Path) -> None:
    """Planning only (no synthesis): works with the tiny install and with the full one."""
    if synthvox_voices.espeak_data_dir() is None or shutil.which("mbrola") is None:
        pytest.skip("synthvox needs espeak-ng and mbrola: run `sudo scripts/install-system-deps.sh tiny`")
    pytest.importorskip("wordfreq")
    preset = PRESETS[name]
    plan = synthvox_plan._make_plan(tmp_path, preset, seed=0)
    ids = {split: {s.id for s in plan.speakers[split]} for split in ("train", "val", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["val"] and not ids["val"] & ids["test"]
    if preset.test.max_speakers:
        assert len(ids["test"]) <= preset.test.max_speakers
    for split in ("train", "val", "test"):
        for speaker in plan.speakers[split]:
            utts = plan.utts[speaker.id]
            assert utts and len(utts) <= preset.split(split).utts
            if speaker.real:  # every recording used at most once
                sources = [src for u in utts for src in u.sources]
                assert len(sources) == len(set(sources))
            else:
                assert all(u.text and 0 <= u.pitch <= 99 for u in utts)
    pools = {side: plan.augment[side] for side in ("train", "val", "test")}
    for category in ("noise", "music", "babble", "rirs"):
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            first, second = pools[a][category], pools[b][category]
            assert first and second, (a, b, category)
            assert not {i.key for i in first} & {i.key for i in second}
            assert not {i.path for i in first} & {i.path for i in second}
            # recordings, songs and seeds on one side only
            assert not {i.source for i in first if i.source} & {i.source for i in second if i.source}
            assert not {i.seed for i in first if i.seed} & {i.seed for i in second if i.seed}, category
            variants = [{i.voice.split("+")[1] for i in pool["babble"]} for pool in (pools[a], pools[b])]
            assert not variants[0] & variants[1], (a, b)
    train, test = pools["train"], pools["test"]
    lincity = [i.source for i in train["noise"] + test["noise"] if i.kind == "copy"]
    if lincity:
        families_train = {synthvox_noise.sound_family(i.source) for i in train["noise"] if i.kind == "copy"}
        families_test = {synthvox_noise.sound_family(i.source) for i in test["noise"] if i.kind == "copy"}
        assert not families_train & families_test


def test_make_trials_is_balanced_distinct_and_seeded() -> None:
    spk2utt = {f"s{i}": [f"s{i}-{k}" for k in range(5)] for i in range(4)}
    trials = make_trials(spk2utt, 25, np.random.default_rng(0))
    targets = [t for t in trials if t.target]
    assert len(targets) == 25 and len(trials) == 50
    assert all(t.enroll != t.test for t in trials)
    assert all((t.enroll.split("-")[0] == t.test.split("-")[0]) == t.target for t in trials)
    assert len({frozenset((t.enroll, t.test)) for t in trials}) == 50
    assert trials == make_trials(spk2utt, 25, np.random.default_rng(0))
    assert make_trials({"s0": ["a", "b"]}, 10, np.random.default_rng(0)) == []  # one speaker: none
    # a large list takes the sampling path and stays balanced and unique
    big = {f"s{i}": [f"s{i}-{k}" for k in range(30)] for i in range(30)}
    many = make_trials(big, 2000, np.random.default_rng(1))
    assert sum(t.target for t in many) == 2000 and len(many) == 4000
    assert len({frozenset((t.enroll, t.test)) for t in many}) == 4000


def test_make_trials_writes_readable_lists(tmp_path: Path) -> None:
    from gradw.data.trials import write_trials

    trials = make_trials({"a": ["a-1", "a-2"], "b": ["b-1", "b-2"]}, 10, np.random.default_rng(0))
    write_trials(tmp_path / "trials", trials)
    assert read_trials(tmp_path / "trials") == trials


def test_make_text_is_seeded_and_sized() -> None:
    pytest.importorskip("wordfreq")
    a = synthvox_text.make_text("de", 15, np.random.default_rng(5))
    assert a == synthvox_text.make_text("de", 15, np.random.default_rng(5))
    assert a != synthvox_text.make_text("de", 15, np.random.default_rng(6))
    assert len(a.replace(",", "").split()) == 15 and a.endswith(".")
    ja = synthvox_text.make_text("ja", 10, np.random.default_rng(0))
    assert " " not in ja and all("\u3040" <= ch <= "\u30ff" or ch in "、。" for ch in ja)
    te = synthvox_text.make_text("te", 8, np.random.default_rng(0))
    assert all("\u0c00" <= ch <= "\u0c7f" or ch in " ,." for ch in te)
    assert synthvox_text.text_language_ok("af") and synthvox_text.text_language_ok("la")


def test_coloured_noise_has_the_requested_slope() -> None:
    rng = np.random.default_rng(0)
    n = 16000 * 4

    def slope(wav: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(wav)) ** 2
        freqs = np.fft.rfftfreq(len(wav), 1 / 16000)
        band = (freqs > 50) & (freqs < 5000)
        return float(np.polyfit(np.log10(freqs[band]), np.log10(power[band]), 1)[0])

    for beta in (0.0, 1.0, 2.0):
        wav = synthvox_noise.coloured_noise(n, beta, rng)
        assert wav.dtype == np.float32 and np.isclose(np.abs(wav).max(), 1.0)
        assert abs(slope(wav) + beta) < 0.15, beta


def test_noise_families_stay_on_one_side() -> None:
    paths = [f"/x/{name}{i}.wav" for name in ("Farm", "Fire", "Mill", "Rail", "Harbor") for i in (1, 2, 3)]
    paths += ["/x/Click.wav", "/x/Green1.wav", "/x/Green2.wav"]
    train, val, test = synthvox_noise.split_families(paths)
    assert sorted(train + val + test) == sorted(paths) and val and test
    fam = synthvox_noise.sound_family
    families = [{fam(p) for p in side} for side in (train, val, test)]
    assert not families[0] & families[1] and not families[0] & families[2] and not families[1] & families[2]
    assert 0.1 <= len(test) / len(paths) <= 0.4 and 0.05 <= len(val) / len(paths) <= 0.4
    assert (train, val, test) == synthvox_noise.split_families(list(reversed(paths)))
    # the test side does not depend on the validation share
    assert synthvox_noise.split_families(paths, val_share=0.3)[2] == test


def test_procedural_generators_are_seeded() -> None:
    for kind in ("coloured", "hum", "am", "synth_music"):
        item = synthvox_noise.AugItem("k", "/unused.flac", kind, seed=7, seconds=1.5)
        a, b = synthvox_noise.make_aug_item(item), synthvox_noise.make_aug_item(item)
        assert a.shape == (24000,) and np.array_equal(a, b), kind
        assert np.isfinite(a).all() and 0.85 < np.abs(a).max() <= 0.9 + 1e-6
        other = synthvox_noise.make_aug_item(dataclasses.replace(item, seed=8))
        assert not np.array_equal(a, other), kind


def test_babble_variants_split_by_parity() -> None:
    variants = synthvox_noise.babble_variants()
    if not variants:
        pytest.skip("espeak-ng is not installed: run `sudo scripts/install-system-deps.sh tiny`")
    train, val, test = set(variants[0::4]), set(variants[2::4]), set(variants[1::2])
    assert train and val and test and not train & test and not train & val and not val & test
    assert not any("whisper" in v.lower() for v in variants)


def test_missing_espeak_names_the_package_and_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synthvox_build, "espeak_data_dir", lambda: None)
    with pytest.raises(SynthvoxError, match=r"espeak-ng.*install-system-deps\.sh tiny"):
        build_synthvox(tmp_path / "x", preset="tiny")
    assert not (tmp_path / "x").exists()
    assert issubclass(SynthvoxError, DataError)  # the CLI reports it as one clear line


def test_missing_voices_are_reported_with_the_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if synthvox_voices.espeak_data_dir() is None:
        pytest.skip("espeak-ng is not installed: run `sudo scripts/install-system-deps.sh tiny`")
    monkeypatch.setattr(
        synthvox_plan,
        "missing_requirement",
        lambda s, espeak_ok=True: "mbrola" if s.engine == "mbrola" else None,
    )
    with pytest.raises(SynthvoxError, match=r"val: 0.*missing: mbrola.*install-system-deps\.sh tiny"):
        build_synthvox(tmp_path / "x", preset="tiny")


def test_unknown_preset_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SynthvoxError, match="unknown synthvox preset 'huge'"):
        build_synthvox(tmp_path, preset="huge")


def test_ktuberling_words_make_utterances_without_narrowband_takes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A KTuberling folder: 8 kHz takes are left out, stereo 44.1 kHz words are downmixed to 16 kHz
    and concatenated with the planned gaps, each word used once."""
    folder = tmp_path / "sounds" / "nn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(12):
        t = np.arange(int(0.8 * 44100)) / 44100
        tone = 0.3 * np.sin(2 * np.pi * (150 + 10 * k) * t)
        sf.write(folder / f"word{k:02d}.wav", np.stack([tone, tone], axis=1), 44100)
    sf.write(folder / "narrow.wav", 0.3 * rng.standard_normal(8000), 8000)
    sf.write(folder / "word12.ogg", np.stack([tone, tone], axis=1), 44100)
    monkeypatch.setattr(synthvox_voices, "KTUBERLING_DIR", str(tmp_path / "sounds"))
    synthvox_voices._prompts.cache_clear()
    try:
        speaker = next(s for s in synthvox_voices.CATALOGUE if s.id == "ktuberling-nn")
        prompts = synthvox_voices.list_prompts(speaker)
        assert [Path(p).name for p in prompts] == [f"word{k:02d}.wav" for k in range(12)] + ["word12.ogg"]
        assert synthvox_voices.missing_requirement(speaker) is None
        size = SplitSize(3, (2.0, 3.0))
        plan = synthvox_plan._Plan()
        synthvox_plan._plan_real(tmp_path / "out", 0, "val", speaker, size, plan)
        utts = plan.utts[speaker.id]
        assert len(utts) == 3
        sources = [s for u in utts for s in u.sources]
        assert len(sources) == len(set(sources)) and all(s.endswith((".wav", ".ogg")) for s in sources)
        done, failed, _ = synthvox_voices.synthesize_speaker_batch(speaker, utts, "")
        assert not failed and set(done) == {u.utt for u in utts}
        for u in utts:
            wav = done[u.utt]
            assert wav.ndim == 1 and np.isfinite(wav).all()
            words = len(u.sources) * 0.8
            # the trimmed words (about 0.8 s each) and the gaps, at 16 kHz, cut at max_seconds
            expected = min(words + sum(u.gaps), u.max_seconds)
            assert abs(len(wav) / 16000 - expected) < 0.25, (u.utt, len(wav) / 16000, expected)
    finally:
        synthvox_voices._prompts.cache_clear()


def test_missing_ktuberling_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synthvox_voices, "KTUBERLING_DIR", str(tmp_path / "nowhere"))
    synthvox_voices._prompts.cache_clear()
    try:
        speaker = next(s for s in synthvox_voices.CATALOGUE if s.id == "ktuberling-fr")
        assert synthvox_voices.missing_requirement(speaker) == "ktuberling-data"
    finally:
        synthvox_voices._prompts.cache_clear()
