"""The example notebooks run top to bottom in a real kernel (nbclient), downloading from a local
fault server (``NBMODELS_DEMO_REF``), with the kernel's nbmodels/HF/IPython state in tmp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SIZE = 1_500_000


def _outputs(nb: Any) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "api_tour.ipynb"])
def test_notebook_runs_offline_against_a_local_server(
    name: str, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_file("stories.gguf", payload(SIZE))
    server.add_fault("stories.gguf", Fault.trickle(3_000_000))  # slow enough to show progress
    home = tmp_path / "nbhome"
    for var, value in {
        "NBMODELS_DEMO_REF": server.url("stories.gguf"),
        "NBMODELS_HOME": str(home),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("NBMODELS_WIDGETS", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = _outputs(nb)
    assert [o for o in outputs if o["output_type"] == "error"] == []
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "it/s" not in stderr and "%|" not in stderr  # no tqdm bars from huggingface_hub
    (target,) = (home / "downloads").rglob("stories.gguf")
    assert target.read_bytes() == payload(SIZE)
    widgets = [o["data"] for o in outputs if WIDGET_MIME in o.get("data", {})]
    assert widgets, "no widget was displayed"
    assert all(w["text/plain"] for w in widgets)  # every widget carries a text form
    text = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
    assert str(target) in text


def test_quickstart_by_default_uses_the_local_hub_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without NBMODELS_DEMO_REF the notebook starts the emulator itself: no outside host."""
    for var, value in {
        "NBMODELS_HOME": str(tmp_path / "nbhome"),
        "HF_HOME": str(tmp_path / "hf"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("NBMODELS_DEMO_REF", "HF_ENDPOINT", "NBMODELS_WIDGETS"):
        monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = _outputs(nb)
    assert [o for o in outputs if o["output_type"] == "error"] == []
    (gguf,) = (tmp_path / "hf" / "hub").glob("models--nbmodels-demo--*/snapshots/*/*Q4_K_M.gguf")
    assert gguf.stat().st_size > 0
    # The demo repos exist only in the emulator: the file above came from 127.0.0.1.
    assert "hf:nbmodels-demo/" in json.dumps([o.get("data", {}) for o in outputs])
