"""The README's main-job command runs end to end (small scale, so it is quick)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_against_the_embedded_hub_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    result = subprocess.run(
        [sys.executable, "-m", "nbmodels.testing.demo", "--scale", "0.05", "--rate", "50",
         "--home", str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Local Hub emulator at http://127.0.0.1:" in out
    assert "Q4_K_M: completed" in out and "Q8_0 (2 parts): completed" in out
    assert "Again: already_downloaded with 0 network requests." in out
    assert "huggingface_hub finds it offline: True" in out
    assert not (tmp_path / "demo").exists()  # cleaned up without --keep
