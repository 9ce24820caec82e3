"""The wheel: presets ship inside it, and an installed gradw runs outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_presets_and_runs_outside_the_source_tree(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, REPO],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("gradw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"gradw/configs/{p}.yaml" for p in ("tiny", "demo", "full", "paper")} <= set(names)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c", "import gradw; print(gradw.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(probe.stdout.strip()).is_relative_to(site)  # the installed copy, not the source tree
    result = subprocess.run(
        [sys.executable, "-m", "gradw", "config", "--config", "demo"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "out_dir: exp/demo/gradw" in result.stdout
    assert "scheme: gradw\n" in result.stdout  # the literal Grad-W weights of the demo preset
