"""synthvox's out-of-domain test pool (``augment/test-ood``): nothing shared with the other pools,
in the plan and in a built corpus; its generators; built alone into a corpus that lacks it.

The build tests need the packages of ``scripts/install-system-deps.sh tiny`` and are skipped,
naming that script, where they are not installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import strip_ood_pool

from gradw.data.corpora.synthvox import noise as synthvox_noise
from gradw.data.corpora.synthvox import ood as synthvox_ood
from gradw.data.corpora.synthvox import plan as synthvox_plan
from gradw.data.corpora.synthvox import voices as synthvox_voices
from gradw.data.corpora.synthvox.build import add_pool, pool_ready
from gradw.data.corpora.synthvox.ood_plan import plan_ood
from gradw.data.corpora.synthvox.presets import OOD_POOL, OOD_TINY_PACKAGES, PRESETS, SIDES, SynthvoxError
from gradw.data.corpora.synthvox.voices import CATALOGUE
from gradw.data.dirs import AUGMENT_CATEGORIES, AugmentDir

INSTALL = "run `sudo scripts/install-system-deps.sh tiny`"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file (the private espeak-ng folder left out)."""
    return {
        p.relative_to(root).as_posix(): (_digest(p), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


def _ood_plan_or_skip(name: str, tmp_path: Path):
    if synthvox_voices.espeak_data_dir() is None or shutil.which("mbrola") is None:
        pytest.skip(f"synthvox needs espeak-ng and mbrola: {INSTALL}")
    pytest.importorskip("wordfreq")
    plan = synthvox_plan._make_plan(tmp_path, PRESETS[name], seed=0)
    if OOD_POOL not in plan.augment:
        pytest.skip(f"the out-of-domain pool's packages are missing ({', '.join(plan.missing)}): {INSTALL}")
    return plan


def _assert_nothing_shared(plan) -> None:
    """The out-of-domain pool against each of the train, validation and test pools: keys, paths,
    recordings, seeds, generators, source packages and voices."""
    ood = plan.augment[OOD_POOL]
    ood_origins = {src for cat in plan.aug_sources[OOD_POOL].values() for src in cat}
    speakers = {s.id for s in CATALOGUE} | {s.voice for s in CATALOGUE}
    for side in SIDES:
        other = plan.augment[side]
        for category in AUGMENT_CATEGORIES:
            mine, theirs = ood[category], other[category]
            assert mine and theirs, (side, category)
            assert not {i.key for i in mine} & {i.key for i in theirs}, (side, category)
            assert not {i.path for i in mine} & {i.path for i in theirs}, (side, category)
            sources = {s for i in mine for s in (i.source, *i.sources) if s}
            assert not sources & {s for i in theirs for s in (i.source, *i.sources) if s}, (side, category)
            assert not {i.seed for i in mine if i.seed} & {i.seed for i in theirs if i.seed}, (side, category)
            assert not {i.kind for i in mine} & {i.kind for i in theirs}, (side, category)  # generators
            assert not {i.voice for i in mine if i.voice} & {i.voice for i in theirs if i.voice}
        # no source package (nor procedural generator) of any category is shared
        assert not ood_origins & {src for cat in plan.aug_sources[side].values() for src in cat}, side
    talkers = {i.voice for i in ood["babble"]}
    assert talkers <= {t.id for t in synthvox_ood.TALKERS}
    assert not talkers & speakers  # no babble talker is a speaker of a split
    voices = {t.voice for t in synthvox_ood.TALKERS if t.id in talkers}
    assert not voices & speakers
    variants = {i.voice.split("+")[1] for side in SIDES for i in plan.augment[side]["babble"]}
    assert not voices & variants and not talkers & variants
    packages = {t.package for t in synthvox_ood.TALKERS if t.id in talkers}
    assert not packages & {s.package for s in CATALOGUE}
    assert "espeak-ng" not in ood_origins


@pytest.mark.parametrize("name", ["tiny", "demo", "full"])
def test_ood_plan_shares_nothing_with_the_other_pools(name: str, tmp_path: Path) -> None:
    """Planning only (no synthesis): every preset, with what is installed here."""
    plan = _ood_plan_or_skip(name, tmp_path)
    _assert_nothing_shared(plan)
    size = PRESETS[name].ood
    ood = plan.augment[OOD_POOL]
    assert len(ood["babble"]) == size.babble and len(ood["rirs"]) == size.rirs
    assert sum(i.kind in ("machine", "crackle") for i in ood["noise"]) == size.noise
    if size.music is not None:
        assert len(ood["music"]) <= size.music
    if size.packages is not None:  # tiny draws on the tiny install alone, whatever else is here
        used = {src for cat in plan.aug_sources[OOD_POOL].values() for src in cat}
        assert {u for u in used if not u.startswith(("procedural-", "pyroomacoustics", "banded"))} <= set(
            size.packages
        )
    # the same seed plans the same pool; another seed other texts, prompts and seeds
    again = plan_ood(tmp_path, 0, PRESETS[name])
    assert again.items == ood
    other = plan_ood(tmp_path, 1, PRESETS[name])
    assert [i.seed for i in other.items["rirs"]] != [i.seed for i in ood["rirs"]]


def test_talkers_are_no_speakers_and_exclusions_hold() -> None:
    ids = [t.id for t in synthvox_ood.TALKERS]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(synthvox_ood.EXCLUDED_TALKERS)
    catalogue = {s.id for s in CATALOGUE} | {s.voice for s in CATALOGUE}
    assert not set(ids) & catalogue and not {t.voice for t in synthvox_ood.TALKERS} & catalogue
    # RHVoice's alan and slt are CMU ARCTIC awb and slt: speakers of the test split
    assert {"flite-awb", "festival-cmu_us_slt"} <= {s.id for s in CATALOGUE if s.split == "test"}
    assert not {"alan", "slt", "awb"} & {t.voice for t in synthvox_ood.TALKERS}
    assert {t.gender for t in synthvox_ood.TALKERS} == {"m", "f"}
    assert all(t.package in synthvox_ood.OOD_LICENCES for t in synthvox_ood.TALKERS)


def test_ood_rooms_lie_outside_the_training_rooms() -> None:
    low, high = synthvox_noise.ROOM_SIZE
    booth, hall = synthvox_ood.ROOM_SIZES["booth"], synthvox_ood.ROOM_SIZES["hall"]
    assert all(b < lo for b, lo in zip(booth[1], low, strict=True))  # every side shorter
    assert all(h > hi for h, hi in zip(hall[0], high, strict=True))  # every side longer
    rng = np.random.default_rng(0)
    rir = synthvox_ood._rir_banded(rng)
    assert np.isfinite(rir).all() and np.argmax(np.abs(rir)) < len(rir) // 2


def test_ood_generators_are_seeded_and_differ_from_the_others() -> None:
    for kind in ("machine", "crackle"):
        item = synthvox_noise.AugItem("k", "/unused.flac", kind, seed=7, seconds=2.0)
        a, b = synthvox_ood.make_ood_item(item), synthvox_ood.make_ood_item(item)
        assert a.shape == (32000,) and np.array_equal(a, b), kind
        assert np.isfinite(a).all() and 0.85 < np.abs(a).max() <= 0.9 + 1e-6
        assert not np.array_equal(a, synthvox_ood.make_ood_item(dataclasses.replace(item, seed=8)))
        assert not set(synthvox_ood.OOD_KINDS) & {"coloured", "hum", "am", "synth_music", "rir", "babble"}
    with pytest.raises(ValueError, match="unknown out-of-domain item kind"):
        synthvox_ood.make_ood_item(synthvox_noise.AugItem("k", "/x.flac", "coloured", seed=1, seconds=1.0))


def test_opensfx_catalogue_is_read() -> None:
    if not Path(synthvox_ood.OPENSFX_CAT).is_file():
        pytest.skip("openttd-opensfx is not installed: run `sudo scripts/install-system-deps.sh full`")
    found = synthvox_ood.noise_recordings()["openttd-opensfx"]
    names = [n for n, _ in found]
    assert len(names) > 30 and any("applause" in n for n in names) and any("chainsaw" in n for n in names)
    assert not any(word in n for n in names for word in ("beep", "morse", "year", "toyland"))
    wav = synthvox_ood._read_source(dict((n, s) for n, s in found)[next(n for n in names if "applause" in n)])
    assert 3.0 < len(wav) / 16000 < 4.5 and np.abs(wav).max() > 0.05


# ---------------------------------------------------------------------------------------------
# the tiny build


@pytest.fixture(scope="module")
def tiny(synthvox_tiny: tuple[Path, dict, float]) -> Path:
    out, summary, _ = synthvox_tiny
    if OOD_POOL not in summary["augment"]:
        pytest.skip(
            f"the out-of-domain pool's packages ({' '.join(OOD_TINY_PACKAGES)}) are missing: {INSTALL}"
        )
    return out


def test_built_ood_pool_shares_nothing(tiny: Path) -> None:
    pools = {side: AugmentDir.load(tiny / "augment" / side) for side in (*SIDES, OOD_POOL)}
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert manifest["augment"][OOD_POOL] and manifest["ood"]["pool"] == OOD_POOL
    ood_sources = {src for cat in manifest["augment_sources"][OOD_POOL].values() for src in cat}
    assert {"libttspico-utils", "simutrans-pak64", "asc-music"} <= ood_sources
    for side in SIDES:
        assert not ood_sources & {src for cat in manifest["augment_sources"][side].values() for src in cat}
        for category in AUGMENT_CATEGORIES:
            mine = {pools[OOD_POOL].path(category, k) for k in pools[OOD_POOL].keys(category)}
            theirs = {pools[side].path(category, k) for k in pools[side].keys(category)}
            assert mine and not mine & theirs
            assert not set(pools[OOD_POOL].keys(category)) & set(pools[side].keys(category))
            assert not {_digest(p) for p in mine} & {_digest(p) for p in theirs}, (side, category)
    talkers = {t["id"] for t in manifest["ood"]["talkers"]}
    assert talkers and not talkers & {s["id"] for s in manifest["speakers"]}
    assert all(manifest["licences"][p] for p in ood_sources if p in synthvox_ood.OOD_LICENCES)
    # the plan the corpus was built from: no seed or voice of another pool
    _assert_nothing_shared(synthvox_plan._make_plan(tiny, PRESETS["tiny"], seed=0))


def test_add_pool_builds_only_the_missing_pool(tiny: Path, tmp_path: Path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(tiny, copy, symlinks=True)
    strip_ood_pool(copy)
    assert not pool_ready(copy) and pool_ready(tiny)
    before = _snapshot(copy)

    summary = add_pool(copy, jobs=1, quiet=True)
    assert summary["failed"] == 0 and summary["files_skipped"] == 0
    assert summary["augment"][OOD_POOL] == {
        c: len(AugmentDir.load(tiny / "augment" / OOD_POOL).keys(c)) for c in AUGMENT_CATEGORIES
    }
    after = _snapshot(copy)
    for name, (digest, mtime) in before.items():  # every file but the manifest: untouched
        if name != "manifest.json":
            assert after[name] == (digest, mtime), name
    added = set(after) - set(before)
    assert added and all(n.startswith((f"augment/{OOD_POOL}/", f"audio/augment/{OOD_POOL}/")) for n in added)
    full = _snapshot(tiny)
    for name in added:  # the same pool as the full build made, byte for byte
        assert after[name][0] == full[name][0], name
    assert json.loads((copy / "manifest.json").read_text()) == json.loads(
        (tiny / "manifest.json").read_text()
    )
    assert pool_ready(copy)

    again = add_pool(copy, jobs=1, quiet=True)  # a rerun makes nothing
    assert again["files_made"] == 0 and again["files_skipped"] == len(added) - len(AUGMENT_CATEGORIES)
    assert {n: v[0] for n, v in _snapshot(copy).items()} == {n: v[0] for n, v in after.items()}


def test_add_pool_needs_a_corpus(tmp_path: Path) -> None:
    with pytest.raises(SynthvoxError, match="no synthvox corpus here"):
        add_pool(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"corpus": "synthvox", "preset": "huge", "seed": 0}))
    with pytest.raises(SynthvoxError, match="known preset"):
        add_pool(tmp_path)
    with pytest.raises(SynthvoxError, match="only the test-ood pool"):
        add_pool(tmp_path, "test")
    assert not pool_ready(tmp_path)
