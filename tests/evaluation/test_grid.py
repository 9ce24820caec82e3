"""``gradw evaluate`` end to end on the toy corpus: every peer, the report, the embedding cache,
resuming, input errors, torchrun sharding, clean enrolment and trial subsets."""

import csv
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_enhancer_checkpoint, with_short_utterance

from gradw.audio.io import read_audio
from gradw.cli import main
from gradw.config import EvaluationConfig
from gradw.data.conditions import Condition
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError
from gradw.data.manifest import Manifest
from gradw.data.trials import Trial, load_trials, select_trials
from gradw.evaluation.content import InputDigests
from gradw.evaluation.grid import EmbeddingStore, condition_hash, evaluate, scorer_identity
from gradw.evaluation.metrics import eer
from gradw.evaluation.scoring import read_scores
from gradw.evaluation.systems import load_system, parse_system
from gradw.models.loading import load_speaker_network

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PEERS = ["rnnoise", "deepfilternet3", "spectral-gating"]
CONDITIONS = ["clean", "noise_0", "noise_-5", "music_0", "music_-5", "babble_0", "babble_-5"]
# 3 test speakers: some bootstrap resamples of speakers hold one class only (warned, dropped)
pytestmark = pytest.mark.filterwarnings("ignore:.*speaker resamples lacked:RuntimeWarning")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _evaluate_cli(args: list[str], cwd: Path) -> None:
    result = _run([sys.executable, "-m", "gradw", "evaluate", *args], cwd)
    assert result.returncode == 0, result.stderr[-3000:]


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


def _assert_rows_match(rows: list[dict], expected: list[dict]) -> None:
    """Same systems, conditions and metrics; numbers equal up to floating-point summation order.

    A recomputed embedding may come from a batch of other items than the first time (batches
    hold the renderings still needed), which changes only the order of floating-point sums.
    """
    assert [(r["system"], r["condition"]) for r in rows] == [(r["system"], r["condition"]) for r in expected]
    for a, b in zip(rows, expected, strict=True):
        assert a["metrics"].keys() == b["metrics"].keys()
        for key in a["metrics"]:
            assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-6, abs=1e-9), (
                a["system"],
                a["condition"],
                key,
            )


def _cache_state(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(cache.glob("emb-*.npz"))}


# ---------------------------------------------------------------------------------------------
# every peer, through the command line


@pytest.fixture(scope="module")
def full_run(toy_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """One evaluation of every kind of system over 6 test utterances (2 of each of 3 speakers, 15
    trials: DeepFilterNet3 costs ~0.2 s a call on the CPU)."""
    root = tmp_path_factory.mktemp("bench")
    test = SpeechDir.load(toy_corpus / "test")
    speakers = sorted(test.spk2utt)[:3]
    utts = [u for u in sorted(test.wavs) if u.endswith(("-00", "-01")) and test.utt2spk[u] in speakers]
    assert len(utts) == 6
    trials = [Trial(a, b, test.utt2spk[a] == test.utt2spk[b]) for a, b in combinations(utts, 2)]
    trials_file = root / "trials.txt"
    trials_file.write_text("".join(f"{int(t.target)} {t.enroll} {t.test}\n" for t in trials))
    g_a = make_enhancer_checkpoint(root / "a.pt", seed=1)
    g_b = make_enhancer_checkpoint(root / "b.pt", seed=2)
    systems = ["noisy", f"gradw:{g_a}", f"equalw:{g_b}", *PEERS]
    out = root / "out"
    args = [
        "--test",
        str(toy_corpus / "test"),
        "--augment",
        str(toy_corpus / "augment" / "test"),
        "--trials",
        str(trials_file),
        "--systems",
        ",".join(systems),
        "--categories",
        "noise,music,babble",
        "--snrs",
        "clean,0,-5",
        "--scorer",
        "resnet-tiny",
        "--scorer-checkpoint",
        "random",
        "--n-boot",
        "50",
        "--threads",
        "1",
        "--quiet",
    ]
    _evaluate_cli([*args, "--out", str(out)], root)
    return {"root": root, "out": out, "args": args, "trials": trials, "test": test, "rows": _rows(out)}


def test_results_cover_every_system_and_condition(full_run):
    rows, trials = full_run["rows"], full_run["trials"]
    names = ["noisy", "gradw", "equalw", *PEERS]
    assert [(r["system"], r["condition"]) for r in rows] == [(s, c) for s in names for c in CONDITIONS]
    n_target = sum(t.target for t in trials)
    assert n_target == 3
    for row in rows:
        m = row["metrics"]
        assert 0.0 <= m["eer"] <= 100.0 and math.isfinite(m["eer"])
        assert 0.0 <= m["min_dcf_0.01"] <= 1.0 and 0.0 <= m["min_dcf_0.05"] <= 1.0
        assert m["n_trials"] == len(trials) == 15 and m["n_target"] == n_target
        assert m["eer_ci_low"] <= m["eer"] <= m["eer_ci_high"]
        assert row["snr_db"] == (
            None if row["condition"] == "clean" else float(row["condition"].split("_")[1])
        )
    with open(full_run["out"] / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["system"], r["condition"]) for r in table] == [(r["system"], r["condition"]) for r in rows]
    for line, row in zip(table, rows, strict=True):
        assert float(line["eer"]) == pytest.approx(row["metrics"]["eer"], rel=1e-12)


def test_score_files_hold_every_trial_and_give_the_row_eer(full_run):
    out, trials = full_run["out"], full_run["trials"]
    labels = np.array([t.target for t in trials])
    for row in full_run["rows"]:
        path = out / "scores" / row["system"] / f"{row['condition']}.txt"
        assert len(path.read_text().splitlines()) == len(trials)
        enroll, test, scores, file_labels = read_scores(path)
        assert list(zip(enroll, test, strict=True)) == [(t.enroll, t.test) for t in trials]
        assert np.array_equal(file_labels, labels)
        assert 100 * eer(scores, labels)[0] == pytest.approx(row["metrics"]["eer"], abs=1e-9)
    # the paired difference against noisy is, at its point estimate, the difference of the EERs
    noisy = {r["condition"]: r["metrics"]["eer"] for r in full_run["rows"] if r["system"] == "noisy"}
    for row in full_run["rows"]:
        if row["system"] == "noisy":
            assert "eer_diff_vs_noisy" not in row["metrics"]
        else:
            expected = row["metrics"]["eer"] - noisy[row["condition"]]
            assert row["metrics"]["eer_diff_vs_noisy"] == pytest.approx(expected, abs=1e-9)


def test_noisy_clean_scores_are_cosines_of_the_scorer_embeddings(full_run):
    """Recomputed outside the benchmark: a random scorer is drawn from the evaluation seed (0)."""
    torch.manual_seed(0)
    scorer = load_speaker_network("resnet-tiny", checkpoint="random").freeze()
    test = full_run["test"]
    embeddings = {}
    with torch.no_grad():
        for utt in {u for t in full_run["trials"] for u in (t.enroll, t.test)}:
            emb = scorer.embed(torch.from_numpy(read_audio(test.wavs[utt]))[None])[0].double()
            embeddings[utt] = (emb / emb.norm()).numpy()
    expected = [float(embeddings[t.enroll] @ embeddings[t.test]) for t in full_run["trials"]]
    _, _, scores, _ = read_scores(full_run["out"] / "scores" / "noisy" / "clean.txt")
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_report_and_plots_are_written(full_run):
    out = full_run["out"]
    report = (out / "report.md").read_text()
    for name in ["noisy", "gradw", "equalw", *PEERS]:
        assert name in report
    assert "plots/eer_vs_snr.png" in report
    # random weights were asked for by name: the report says so, and names no checkpoint
    assert "**Scorer E:** `resnet-tiny` with **random weights** (initialised from seed 0" in report
    assert "checkpoint `random`" not in report
    plots = sorted((out / "plots").glob("*.png"))
    assert out / "plots" / "eer_vs_snr.png" in plots and any(p.name.startswith("det_snr_") for p in plots)
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC


def test_an_interrupted_evaluation_resumes_from_the_cache(full_run):
    out, cache = full_run["out"], full_run["out"] / "cache"
    before = _cache_state(cache)
    assert len(before) == 6 * len(CONDITIONS)  # one file per system x condition
    lost = sorted(before)[:2]  # as if the run had been killed before writing these two
    for name in lost:
        (cache / name).unlink()
    for name in ("results.json", "results.csv", "report.md"):
        (out / name).unlink()
    _evaluate_cli([*full_run["args"], "--out", str(out)], full_run["root"])
    after = _cache_state(cache)
    assert after.keys() == before.keys()
    assert [n for n in after if after[n] != before[n]] == lost  # only the missing ones recomputed
    _assert_rows_match(_rows(out), full_run["rows"])  # bootstrap intervals included


def test_adding_a_system_computes_only_its_embeddings(full_run, capsys: pytest.CaptureFixture[str]):
    root = full_run["root"]
    cache = root / "cache-copy"  # the other tests keep the full run's own cache as they found it
    shutil.copytree(full_run["out"] / "cache", cache)
    before = _cache_state(cache)
    assert len(before) == 6 * len(CONDITIONS)
    g_c = make_enhancer_checkpoint(root / "c.pt", seed=3)
    # in this process (the CLI run drew its random scorer from the seed alone, so this one is the
    # same) and a fresh output folder: it draws the same manifest and shares the cache
    config = EvaluationConfig(
        test=str(full_run["test"].root),
        out=str(root / "more"),
        systems=["noisy", f"third:{g_c}"],
        augment=str(Path(full_run["args"][full_run["args"].index("--augment") + 1])),
        categories=["noise", "music", "babble"],
        snrs=[0.0, -5.0],
        scorer="resnet-tiny",
        scorer_checkpoint="random",
        trials=str(root / "trials.txt"),
        n_boot=50,
        cache_dir=str(cache),
    )
    evaluate(config, quiet=False)
    after = _cache_state(cache)
    assert {n: after[n] for n in before} == before
    assert len(set(after) - set(before)) == len(CONDITIONS)
    # off a terminal, a plain line per system says what was computed and what came from the cache
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[evaluate]")]
    assert lines[0].startswith(
        f"[evaluate] system 1/2 noisy: 0 utterance-conditions embedded ({len(CONDITIONS)} conditions cached)"
    )
    assert lines[1].startswith(
        f"[evaluate] system 2/2 third: {6 * len(CONDITIONS)} utterance-conditions embedded (0 "
    )
    assert all(", left " in line for line in lines)
    rows = _rows(root / "more")
    assert [r for r in rows if r["system"] == "noisy"] == [
        r for r in full_run["rows"] if r["system"] == "noisy"
    ]
    assert [r["condition"] for r in rows if r["system"] == "third"] == CONDITIONS


# ---------------------------------------------------------------------------------------------
# input errors: one line, exit status 2, before any work


def _bad_trials(tmp_path: Path) -> str:
    path = tmp_path / "bad_trials"
    path.write_text("1 spk009-00 spk009-01\n0 spk009-00 nosuch-utt\n")
    return str(path)


def _noise_only(tmp_path: Path, corpus: Path) -> str:
    """A copy of the test noise pools without the music list."""
    path = tmp_path / "pools"
    shutil.copytree(corpus / "augment" / "test", path)
    shutil.rmtree(path / "music")
    return str(path)


def _short_test(tmp_path: Path, corpus: Path) -> str:
    """The test set with a 10 ms first utterance (spk009-00)."""
    return str(with_short_utterance(corpus / "test", tmp_path / "short-test")[0])


def _garbage(tmp_path: Path) -> str:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00not a checkpoint")
    return f"gradw:{path}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t, c: ["--trials", _bad_trials(t)],
            r"bad_trials: trials name utterances missing.*nosuch-utt",
        ),
        (lambda t, c: ["--systems", f"noisy,{_garbage(t)}"], r"cannot read checkpoint .*garbage\.pt"),
        (lambda t, c: ["--systems", "noisy,rnnoisy"], r"unknown system 'rnnoisy'"),
        (lambda t, c: ["--augment", None], r"noisy conditions need an augmentation directory \(--augment\)"),
        (lambda t, c: ["--augment", str(t / "nowhere")], r"nowhere.*not a directory"),
        (
            lambda t, c: ["--augment", _noise_only(t, c), "--categories", "noise,music"],
            r"pools: .*missing.* music",
        ),
        (lambda t, c: ["--scorer", "resnet99"], r"unknown scorer 'resnet99'"),
        (
            lambda t, c: ["--scorer", "resnet34", "--scorer-checkpoint", None],
            r"scorer resnet34 has no weights of its own: give --scorer-checkpoint PATH .*"
            r"or --scorer-checkpoint random",
        ),
        (lambda t, c: ["--categories", "noise,nosie"], r"unknown condition categories \['nosie'\]"),
        (lambda t, c: ["--max-trials", "1"], r"evaluate.max_trials: must be an integer >= 2"),
        (
            lambda t, c: ["--test", _short_test(t, c)],
            r"short-test/short\.wav: utterance 'spk009-00' lasts 10\.0 ms, shorter than the 80\.0 ms "
            r"\(1280 samples at 16 kHz\) that the scorer resnet-tiny needs; remove it from the list",
        ),
    ],
    ids=[
        "trials",
        "checkpoint",
        "system",
        "no-augment",
        "missing-augment",
        "augment-without-music",
        "scorer",
        "scorer-without-weights",
        "category",
        "max-trials",
        "short-utterance",
    ],
)
def test_bad_inputs_fail_in_one_line_before_any_work(
    change, message, toy_corpus: Path, tmp_path: Path, capsys
):
    options = {
        "--test": str(toy_corpus / "test"),
        "--augment": str(toy_corpus / "augment" / "test"),
        "--systems": "noisy",
        "--snrs": "clean,0",
        "--categories": "noise",
        "--scorer": "resnet-tiny",
        "--scorer-checkpoint": "random",
        "--out": str(tmp_path / "out"),
    }
    changes = change(tmp_path, toy_corpus)
    options.update(zip(changes[::2], changes[1::2], strict=True))
    argv = ["evaluate", "--quiet"] + [x for k, v in options.items() if v is not None for x in (k, v)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradw: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()  # nothing written, not even the output folder


# ---------------------------------------------------------------------------------------------
# cheap runs (noisy and one G, resnet-tiny): sharding, clean enrolment, SNR caching, subsets


def _config(toy_corpus: Path, out: Path, ckpt: Path, **kw) -> EvaluationConfig:
    defaults = {
        "test": str(toy_corpus / "test"),
        "out": str(out),
        "systems": ["noisy", f"gradw:{ckpt}"],
        "augment": str(toy_corpus / "augment" / "test"),
        "categories": ["noise", "babble"],
        "snrs": [0.0],
        "scorer": "resnet-tiny",
        "scorer_checkpoint": "random",
        "n_boot": 50,
    }
    return EvaluationConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def cheap(toy_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cheap")
    ckpt = make_enhancer_checkpoint(root / "g.pt", seed=5)
    config = _config(toy_corpus, root / "one", ckpt, cache_dir=str(root / "cache"))
    evaluate(config, quiet=True)
    return {"root": root, "ckpt": ckpt, "config": config, "rows": _rows(root / "one")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_give_the_rows_of_one(cheap, toy_corpus: Path):
    root, ckpt = cheap["root"], cheap["ckpt"]
    out = root / "two"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "gradw",
        "evaluate",
        "--test",
        str(toy_corpus / "test"),
        "--augment",
        str(toy_corpus / "augment" / "test"),
        "--systems",
        f"noisy,gradw:{ckpt}",
        "--categories",
        "noise,babble",
        "--snrs",
        "clean,0",
        "--scorer",
        "resnet-tiny",
        "--scorer-checkpoint",
        "random",
        "--n-boot",
        "50",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    result = _run(command, root)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_rows_match(_rows(out), cheap["rows"])
    assert len(list((out / "cache").glob("emb-*.npz"))) == 2 * 3  # merged; no per-rank parts left
    assert not list((out / "cache").glob("*part*"))


def test_a_run_killed_inside_a_system_resumes_from_its_saved_blocks(
    cheap, toy_corpus: Path, monkeypatch: pytest.MonkeyPatch
):
    import gradw.evaluation.grid as benchmark

    root, ckpt = cheap["root"], cheap["ckpt"]
    utts = len(Manifest.load(Path(cheap["config"].out) / "manifest.json").utts)
    real = benchmark.embed_conditions
    calls: list[int] = []

    def counting(system, block, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(len(block))
        return real(system, block, *args, **kwargs)

    def dies_on_third_block(system, block, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if len(calls) == 2:
            raise KeyboardInterrupt
        return counting(system, block, *args, **kwargs)

    config = _config(toy_corpus, root / "killed", ckpt, cache_dir=str(root / "killed-cache"), save_every=3)
    monkeypatch.setattr(benchmark, "embed_conditions", dies_on_third_block)
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, quiet=True)
    assert calls == [3, 3]  # the first system (noisy) died after two saved blocks of 3 utterances
    partial = sorted((root / "killed-cache").glob("emb-partial-*-0of1.npz"))
    assert len(partial) == 3  # noisy x (clean, noise_0, babble_0), 6 utterances each
    assert all(len(np.load(p)["utts"]) == 6 for p in partial)
    assert not list((root / "killed-cache").glob("emb-[0-9a-f]*.npz"))  # nothing finished yet
    # as if an earlier run with two processes had been killed too: its partial files go at the merge
    shutil.copy(partial[0], str(partial[0]).replace("-0of1.npz", "-1of2.npz"))

    calls.clear()
    monkeypatch.setattr(benchmark, "embed_conditions", counting)
    rows = evaluate(config, quiet=True)
    assert sum(calls) == (utts - 6) + utts  # noisy: only what was not saved; gradw: everything
    assert not list((root / "killed-cache").glob("*partial*"))  # merged into the cache files
    assert len(list((root / "killed-cache").glob("emb-*.npz"))) == 2 * 3
    _assert_rows_match([json.loads(json.dumps(asdict(r))) for r in rows], cheap["rows"])


def _embeddings(config: EvaluationConfig, system_spec: str, condition: str, identity: str) -> dict:
    """Cached embeddings of one system x condition, found from the manifest written in OUT."""
    manifest = Manifest.load(Path(config.out) / "manifest.json")
    utts = manifest.utts
    augment = AugmentDir.load(config.augment)
    digests = InputDigests.read(SpeechDir.load(config.test), utts, augment, list(augment.categories))
    key = EmbeddingStore.key(
        identity, condition_hash(manifest, Condition.from_name(condition), utts, digests), condition, utts
    )
    store = EmbeddingStore(Path(config.cache_dir))
    emb = store.load(key)
    assert emb is not None, (system_spec, condition)
    return emb


def test_clean_enrolment_changes_only_the_enrolment_side(cheap, toy_corpus: Path):
    root, ckpt = cheap["root"], cheap["ckpt"]
    files_before = _cache_state(root / "cache")
    config = _config(toy_corpus, root / "enroll", ckpt, cache_dir=str(root / "cache"), clean_enroll=True)
    rows = evaluate(config, quiet=True)
    assert _cache_state(root / "cache") == files_before  # everything it needs was cached already
    base = {(r["system"], r["condition"]): r for r in cheap["rows"]}
    got = {(r.system, r.condition): r for r in rows}
    assert got.keys() == base.keys()
    base_dir, enroll_dir = Path(cheap["config"].out) / "scores", root / "enroll" / "scores"
    scorer = load_speaker_network("resnet-tiny", checkpoint="random")  # identities only, not its weights
    for system in ("noisy", "gradw"):
        # the clean condition: both sides clean either way
        assert (enroll_dir / system / "clean.txt").read_text() == (
            base_dir / system / "clean.txt"
        ).read_text()
        assert got[system, "clean"].metrics == base[system, "clean"]["metrics"]
        spec = "noisy" if system == "noisy" else f"gradw:{ckpt}"
        scorer_id = scorer_identity("resnet-tiny", "random", None, seed=0)
        identity = load_system(
            parse_system(spec), scorer, scorer_id, torch.device("cpu"), config.window_seconds
        ).identity
        clean = _embeddings(config, spec, "clean", identity)
        for condition in ("noise_0", "babble_0"):
            noisy = _embeddings(config, spec, condition, identity)
            enroll, test, scores, _ = read_scores(enroll_dir / system / f"{condition}.txt")
            expected = [
                float(clean[e].astype(np.float64) @ noisy[t].astype(np.float64))
                / float(
                    np.linalg.norm(clean[e].astype(np.float64)) * np.linalg.norm(noisy[t].astype(np.float64))
                )
                for e, t in zip(enroll, test, strict=True)
            ]
            np.testing.assert_allclose(scores, expected, atol=1e-12)
            _, _, both_noisy, _ = read_scores(base_dir / system / f"{condition}.txt")
            assert np.abs(both_noisy - scores).max() > 1e-3


def test_adding_an_snr_computes_only_the_new_conditions(cheap, toy_corpus: Path):
    root, ckpt = cheap["root"], cheap["ckpt"]
    before = _cache_state(root / "cache")
    config = _config(toy_corpus, root / "more-snrs", ckpt, cache_dir=str(root / "cache"), snrs=[0.0, -5.0])
    rows = evaluate(config, quiet=True)
    after = _cache_state(root / "cache")
    assert {n: after[n] for n in before} == before
    assert len(set(after) - set(before)) == 2 * 2  # 2 systems x (noise_-5, babble_-5)
    old = {(r["system"], r["condition"]): r["metrics"] for r in cheap["rows"]}
    for row in rows:
        if (row.system, row.condition) in old:
            assert row.metrics == old[row.system, row.condition]


def _replace_in_place(path: Path, wav: np.ndarray) -> None:
    """Overwrite ``path`` (same inode) with ``wav`` as 16-bit WAV, keeping its size and times."""
    import io

    import soundfile as sf

    before = path.stat()
    buffer = io.BytesIO()
    sf.write(buffer, wav, 16000, subtype="PCM_16", format="WAV")
    with open(path, "r+b") as handle:  # rewritten in place, not a new file renamed over it
        handle.truncate(0)
        handle.write(buffer.getvalue())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def _scores(out: Path) -> dict[str, np.ndarray]:
    return {f"{p.parent.name}/{p.stem}": read_scores(p)[2] for p in sorted((out / "scores").glob("*/*.txt"))}


def test_a_test_file_replaced_in_place_is_embedded_again(tmp_path: Path) -> None:
    from gradw.data.corpora.toy import build_toy_corpus

    corpus = tmp_path / "corpus"
    build_toy_corpus(corpus, speakers=(1, 1, 3), utts_per_speaker=2, seconds=1.0, seed=3)
    ckpt = make_enhancer_checkpoint(tmp_path / "g.pt", seed=5)
    cache = tmp_path / "cache"
    config = _config(corpus, tmp_path / "out", ckpt, cache_dir=str(cache), categories=["noise"], n_boot=20)
    evaluate(config, quiet=True)
    stale = _scores(tmp_path / "out")
    test = SpeechDir.load(corpus / "test")
    changed = test.utts[0]
    other = read_audio(test.wavs[test.utts[-1]])  # another speaker's audio, fitted to the length
    length = read_audio(test.wavs[changed]).shape[0]
    _replace_in_place(test.wavs[changed], np.resize(other, length))

    evaluate(config, quiet=True)  # the same OUT and cache: nothing may be reused for the new audio
    rerun = _scores(tmp_path / "out")
    fresh_config = _config(
        corpus,
        tmp_path / "fresh",
        ckpt,
        cache_dir=str(tmp_path / "fresh-cache"),
        categories=["noise"],
        n_boot=20,
    )
    evaluate(fresh_config, quiet=True)
    fresh = _scores(tmp_path / "fresh")
    assert (
        rerun.keys() == fresh.keys() == stale.keys() and len(fresh) == 2 * 2
    )  # noisy, gradw x clean, noise_0
    enroll, test_side, _, _ = read_scores(tmp_path / "fresh" / "scores" / "noisy" / "clean.txt")
    involved = np.array([changed in (e, t) for e, t in zip(enroll, test_side, strict=True)])
    assert involved.any() and not involved.all()
    for name in fresh:
        np.testing.assert_allclose(rerun[name], fresh[name], rtol=1e-6, atol=1e-7, err_msg=name)
        assert np.abs(rerun[name][involved] - stale[name][involved]).min() > 1e-4, name
        if name.endswith("/clean"):  # clean scores of other pairs read nothing that changed
            np.testing.assert_allclose(rerun[name][~involved], stale[name][~involved], rtol=1e-6, atol=1e-7)
    _assert_rows_match(_rows(tmp_path / "out"), _rows(tmp_path / "fresh"))


def test_a_checkpoint_replaced_in_place_changes_the_system_identity(tmp_path: Path) -> None:
    scorer = load_speaker_network("resnet-tiny", checkpoint="random")
    scorer_id = scorer_identity("resnet-tiny", "random", None, seed=0)
    ckpt = make_enhancer_checkpoint(tmp_path / "g.pt", seed=1)
    spec = parse_system(f"gradw:{ckpt}")
    before = load_system(spec, scorer, scorer_id, torch.device("cpu")).identity
    make_enhancer_checkpoint(ckpt, seed=2)
    after = load_system(spec, scorer, scorer_id, torch.device("cpu")).identity
    assert before != after and scorer_id in before and scorer_id in after


def test_max_trials_keeps_both_classes_and_is_deterministic(toy_corpus: Path, tmp_path: Path):
    test = SpeechDir.load(toy_corpus / "test")
    trials = load_trials(test, "trials")
    assert len(trials) == 120 and sum(t.target for t in trials) == 24
    a = select_trials(trials, 30, seed=0)
    assert a == select_trials(trials, 30, seed=0)
    assert a != select_trials(trials, 30, seed=1)
    assert len(a) == 30 and sum(t.target for t in a) == 6  # the target share of the full list
    assert [t for t in trials if t in a] == a  # a subset, in the list's order
    assert select_trials(trials, None, 0) == trials and select_trials(trials, 500, 0) == trials
    # a tiny sample still holds both classes, whatever the share
    for n in (2, 3):
        sample = select_trials(trials, n, seed=0)
        assert len(sample) == n and {t.target for t in sample} == {True, False}
    skewed = [t for t in trials if t.target] + [t for t in trials if not t.target][:2]
    assert {t.target for t in select_trials(skewed, 4, seed=0)} == {True, False}
    with pytest.raises(DataError, match="at least 2"):
        select_trials(trials, 1, seed=0)
    # through evaluate: clean only (no noise pools needed), 30 trials
    config = EvaluationConfig(
        test=str(toy_corpus / "test"),
        out=str(tmp_path / "out"),
        categories=[],
        snrs=[],
        scorer="resnet-tiny",
        scorer_checkpoint="random",
        max_trials=30,
        n_boot=20,
    )
    rows = evaluate(config, quiet=True)
    assert [(r.condition, r.metrics["n_trials"], r.metrics["n_target"]) for r in rows] == [("clean", 30, 6)]
    _, _, _, labels = read_scores(tmp_path / "out" / "scores" / "noisy" / "clean.txt")
    assert labels.tolist() == [t.target for t in a]


def test_trial_lists_need_both_classes(toy_corpus: Path, tmp_path: Path):
    test = SpeechDir.load(toy_corpus / "test")
    path = tmp_path / "targets_only"
    path.write_text("spk009-00 spk009-01 target\nspk009-00 spk009-02 target\n")
    with pytest.raises(DataError, match="targets_only: needs both target and non-target"):
        load_trials(test, str(path))


def test_test_noise_seen_in_training_is_reported_and_recorded(toy_corpus: Path, tmp_path: Path) -> None:
    ckpt = make_enhancer_checkpoint(tmp_path / "g.pt", seed=5, trained_on=toy_corpus / "augment" / "train")
    # evaluated on its own training noise: every recording is flagged, in a warning and results.json
    leaky = _config(toy_corpus, tmp_path / "leaky", ckpt, augment=str(toy_corpus / "augment" / "train"))
    with pytest.warns(UserWarning, match="system gradw was trained on .* of the recordings"):
        evaluate(leaky, quiet=True)
    seen = json.loads((tmp_path / "leaky" / "results.json").read_text())["checks"]["augment_overlap"]
    expected = AugmentDir.load(toy_corpus / "augment" / "train").fingerprints().size
    assert seen == {"gradw": expected} and expected > 0
    # on the test pools (disjoint recordings): nothing shared, and it is recorded as checked
    clean = _config(toy_corpus, tmp_path / "clean", ckpt)
    evaluate(clean, quiet=True)
    assert json.loads((tmp_path / "clean" / "results.json").read_text())["checks"] == {
        "augment_overlap": {"gradw": 0}
    }


def test_fingerprints_follow_content_not_paths(toy_corpus: Path, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(toy_corpus / "augment" / "train", moved)  # wav.scp holds absolute paths: rewrite
    for scp in moved.glob("*/wav.scp"):
        lines = [line.split(maxsplit=1) for line in scp.read_text().splitlines()]
        copies = []
        for key, path in lines:
            target = scp.parent / Path(path).name
            shutil.copy(path, target)
            copies.append(f"{key} {target}")
        scp.write_text("\n".join(copies) + "\n")
    original = AugmentDir.load(toy_corpus / "augment" / "train").fingerprints()
    assert np.array_equal(AugmentDir.load(moved).fingerprints(), original)
    other = AugmentDir.load(toy_corpus / "augment" / "test").fingerprints()
    assert np.intersect1d(original, other).size == 0


def test_a_quality_aware_calibration_is_applied_with_each_recordings_measures(
    toy_corpus: Path, tmp_path: Path
) -> None:
    from helpers import make_speaker_checkpoint

    from gradw.audio.quality import quality_measures
    from gradw.config import TrainConfig, from_dict
    from gradw.data.conditions import AudioCache, augment_loader, render
    from gradw.evaluation.calibration import Calibration, cllr, min_cllr
    from gradw.training.calibrate import calibrate_checkpoint

    e = make_speaker_checkpoint(tmp_path / "e.pt")
    g = make_enhancer_checkpoint(tmp_path / "g.pt", seed=5, speaker_checkpoint=str(e))
    data = {"val": str(toy_corpus / "val"), "val_augment": str(toy_corpus / "augment" / "test")}
    grid = {"categories": ["clean", "noise", "babble"], "snrs": [0, -10], "max_trials": 200}
    stored = {}
    for name, quality in (("plain", []), ("quality", ["snr_percentile", "seconds"])):
        config = from_dict(TrainConfig, {"data": data, "calibration": {**grid, "quality": quality}})
        stored[name] = calibrate_checkpoint(g, config, tmp_path / f"{name}.pt")
    config = _config(
        toy_corpus,
        tmp_path / "out",
        g,
        systems=["noisy", *(f"{n}:{tmp_path / n}.pt" for n in stored)],
        scorer_checkpoint=str(e),
        scorer_tap="layer4",
        cache_dir=str(tmp_path / "cache"),
    )
    rows = {(r.system, r.condition): r.metrics for r in evaluate(config, quiet=True)}
    conditions = ["clean", "noise_0", "babble_0"]
    for name in stored:
        assert all("cllr" in rows[name, c] and "act_dcf_0.01" in rows[name, c] for c in conditions)
    assert all("cllr" not in rows["noisy", c] for c in conditions)
    # one G, calibrated twice: its embeddings are computed once; the measures once for all systems
    cache = tmp_path / "cache"
    assert len(list(cache.glob("emb-*.npz"))) == 2 * len(conditions)
    measures = {p.name: p.stat().st_mtime_ns for p in cache.glob("quality-*.npz")}
    assert len(measures) == len(conditions)
    # the quality-aware Cllr, by hand from the score files and the measures of the audio itself
    test = SpeechDir.load(toy_corpus / "test")
    manifest = Manifest.load(tmp_path / "out" / "manifest.json")
    loader = augment_loader(AugmentDir.load(toy_corpus / "augment" / "test"), AudioCache())
    aware = stored["quality"]
    for condition in ("noise_0", "clean"):
        enroll, test_side, scores, labels = read_scores(
            tmp_path / "out" / "scores" / "quality" / f"{condition}.txt"
        )

        def audio(utt: str, condition: str = condition) -> np.ndarray:
            clean = read_audio(test.wavs[utt])
            return clean if condition == "clean" else render(manifest.entry(utt, condition), clean, loader)

        side = {u: quality_measures(audio(u), aware.measures) for u in set(enroll) | set(test_side)}
        llr = aware.trial_llr(
            scores, np.stack([side[u] for u in enroll]), np.stack([side[u] for u in test_side])
        )
        assert rows["quality", condition]["cllr"] == pytest.approx(cllr(llr, labels), rel=1e-9)
        assert rows["plain", condition]["cllr"] == pytest.approx(cllr(stored["plain"].llr(scores), labels))
    recorded = json.loads((tmp_path / "out" / "results.json").read_text())["calibration"]
    assert recorded["plain"]["threshold"] == pytest.approx(stored["plain"].score_threshold())
    assert recorded["quality"]["threshold"] is None
    assert set(recorded["quality"]["thresholds_by_snr"]) == {"15", "10", "5", "0"}
    assert Calibration.from_dict(recorded["quality"]) == aware
    # the plain map's LLRs of every condition pooled, by hand from the score files
    pooled_llr, pooled_labels = [], []
    for condition in conditions:
        *_, scores, labels = read_scores(tmp_path / "out" / "scores" / "plain" / f"{condition}.txt")
        pooled_llr.append(stored["plain"].llr(scores))
        pooled_labels.append(labels)
    pooled = recorded["plain"]["test_pooled"]
    every_llr, every_label = np.concatenate(pooled_llr), np.concatenate(pooled_labels)
    assert pooled["cllr"] == pytest.approx(cllr(every_llr, every_label), rel=1e-9)
    assert pooled["loss"] == pytest.approx(pooled["cllr"] - min_cllr(every_llr, every_label), rel=1e-9)
    assert pooled["n_trials"] == every_label.size and pooled["floor"] >= 0.0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "mean min Cllr" in text and "moves with their estimated SNR" in text
    assert f"plain, every condition pooled ({every_label.size:,} trials): Cllr {pooled['cllr']:.3f}" in text
    lines = text.splitlines()
    last_pooled = max(i for i, line in enumerate(lines) if "every condition pooled" in line)
    assert lines[last_pooled + 1] == ""  # the list ends before the next heading
    # a second run reads the measures from the cache
    evaluate(config, quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("quality-*.npz")} == measures
    # with short windows every longer utterance is read, rendered and measured window by window
    # (never whole): its measures are those of the whole rendering cut into the same windows
    from gradw.audio.quality import windowed_quality_measures
    from gradw.evaluation.windows import window_bounds

    windowed = replace(config, out=str(tmp_path / "windowed"), window_seconds=1.0)
    rows = {(r.system, r.condition): r.metrics for r in evaluate(windowed, quiet=True)}
    assert len({p.name for p in cache.glob("quality-*.npz")} - set(measures)) == len(conditions)
    manifest = Manifest.load(tmp_path / "windowed" / "manifest.json")
    enroll, test_side, scores, labels = read_scores(
        tmp_path / "windowed" / "scores" / "quality" / "noise_0.txt"
    )
    cut = 0
    side = {}
    for u in set(enroll) | set(test_side):
        whole = render(manifest.entry(u, "noise_0"), read_audio(test.wavs[u]), loader)
        bounds = window_bounds(whole.shape[0], 1.0)
        cut += len(bounds) > 1
        side[u] = windowed_quality_measures((whole[a:b] for a, b in bounds), aware.measures)
    assert cut > 0
    llr = aware.trial_llr(scores, np.stack([side[u] for u in enroll]), np.stack([side[u] for u in test_side]))
    assert rows["quality", "noise_0"]["cllr"] == pytest.approx(cllr(llr, labels), rel=1e-6)


def test_a_normalising_calibration_gets_its_llrs_from_as_normalised_scores(
    toy_corpus: Path, tmp_path: Path
) -> None:
    """The evaluation's Cllr of a calibration with AS-norm, by hand: the system's embeddings of
    the rendered audio, normalised against the cohort stored in the checkpoint, then the map."""
    from helpers import make_speaker_checkpoint

    from gradw.config import TrainConfig, from_dict
    from gradw.data.conditions import AudioCache, augment_loader, render
    from gradw.evaluation.calibration import cllr, min_cllr
    from gradw.evaluation.grid import scorer_identity
    from gradw.evaluation.score_norm import asnorm_scores
    from gradw.evaluation.systems import load_system, parse_system
    from gradw.models.loading import load_speaker_network
    from gradw.training.calibrate import calibrate_checkpoint

    e = make_speaker_checkpoint(tmp_path / "e.pt")
    g = make_enhancer_checkpoint(tmp_path / "g.pt", seed=5, speaker_checkpoint=str(e))
    data = {
        "train": str(toy_corpus / "train"),
        "val": str(toy_corpus / "val"),
        "val_augment": str(toy_corpus / "augment" / "test"),
    }
    grid = {"categories": ["clean", "noise"], "snrs": [0], "max_trials": 200, "quality": []}
    norm = {"top_n": 3, "utterances": 2}
    config = from_dict(TrainConfig, {"data": data, "calibration": {**grid, "score_norm": norm}})
    stored = calibrate_checkpoint(g, config, tmp_path / "snorm.pt")
    assert stored.score_norm is not None and "AS-norm (top 3" in stored.fitted_on
    config = _config(
        toy_corpus,
        tmp_path / "out",
        g,
        systems=[f"snorm:{tmp_path / 'snorm.pt'}"],
        snrs=[0.0],
        categories=["noise"],
        scorer_checkpoint=str(e),
        scorer_tap="layer4",
    )
    rows = {(r.system, r.condition): r.metrics for r in evaluate(config, quiet=True)}
    scorer = load_speaker_network("resnet-tiny", checkpoint=str(e), tap="layer4")
    scorer_id = scorer_identity("resnet-tiny", str(e), "layer4")
    system = load_system(
        parse_system(f"snorm:{tmp_path / 'snorm.pt'}"), scorer, scorer_id, torch.device("cpu")
    )
    assert system.calibration is not None and system.calibration.score_norm is not None
    test = SpeechDir.load(toy_corpus / "test")
    manifest = Manifest.load(tmp_path / "out" / "manifest.json")
    loader = augment_loader(AugmentDir.load(toy_corpus / "augment" / "test"), AudioCache())
    for condition in ("clean", "noise_0"):
        enroll, test_side, scores, labels = read_scores(
            tmp_path / "out" / "scores" / "snorm" / f"{condition}.txt"
        )

        def audio(utt: str, condition: str = condition) -> np.ndarray:
            clean = read_audio(test.wavs[utt])
            return clean if condition == "clean" else render(manifest.entry(utt, condition), clean, loader)

        emb = {u: system.embed(audio(u)) for u in set(enroll) | set(test_side)}
        sides = np.stack([emb[u] for u in enroll]), np.stack([emb[u] for u in test_side])
        normalised = asnorm_scores(scores, *sides, system.calibration.score_norm.cohort, 3)
        llr = stored.scale * normalised + stored.offset
        metrics = rows["snorm", condition]
        assert metrics["cllr"] == pytest.approx(cllr(llr, labels), rel=1e-4)
        assert metrics["min_cllr_norm"] == pytest.approx(min_cllr(normalised, labels), abs=1e-3)
        assert metrics["min_cllr"] == pytest.approx(min_cllr(scores, labels), abs=1e-9)
    recorded = json.loads((tmp_path / "out" / "results.json").read_text())["calibration"]["snorm"]
    utterances = sum(min(2, len(u)) for u in SpeechDir.load(toy_corpus / "train").spk2utt.values())
    assert recorded["score_norm"]["cohort_shape"] == [utterances, scorer.embedding_dim]  # per utterance
    assert recorded["score_norm"]["top_n"] == 3 and recorded["threshold"] is not None
    text = (tmp_path / "out" / "report.md").read_text()
    assert "mean min Cllr, normalised scores" in text and "normalised score of at least" in text
