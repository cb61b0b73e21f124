"""``%model_download`` / ``%%model_download`` / ``%model_panel`` in a real in-process IPython
shell, against the fault server (``--inspect``: the local Hub emulator); and the shared flag
table (``nbmodels._flags``)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("IPython")

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import nbmodels
from nbmodels import _flags as _cliopts
from nbmodels.cards import ModelCard
from nbmodels.engine import _engine
from nbmodels.notebook import _magic
from nbmodels.testing import HubEmulator
from nbmodels.transfer import partial_paths
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

SIZE = 600_000


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    """One in-process shell (IPython keeps a singleton), with no history database."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        config = Config()
        config.HistoryManager.enabled = False
        sh = InteractiveShell.instance(config=config)
        yield sh


@pytest.fixture
def ip(
    shell: InteractiveShell, engine: _engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    """The shell with the extension loaded, a fresh engine, and the text fallback."""
    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    shell.run_line_magic("load_ext", "nbmodels")
    names = set(shell.user_ns)
    yield shell
    shell.run_line_magic("unload_ext", "nbmodels")
    for name in set(shell.user_ns) - names:
        del shell.user_ns[name]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def run(ip: InteractiveShell, code: str) -> Any:
    result = ip.run_cell(code)
    assert result.error_before_exec is None and result.error_in_exec is None, result
    return result.result


def add(server: FaultServer, name: str, size: int = SIZE, rate: float | None = None) -> str:
    server.add_file(name, payload(size, seed=len(name)))
    if rate is not None:
        for _ in range(4):
            server.add_fault(name, Fault.trickle(rate))
    return server.url(name)


# -- blocking, return values, assignment ---------------------------------------------------------


def test_line_magic_blocks_and_returns_the_path(
    ip: InteractiveShell, server: FaultServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = add(server, "a.bin")
    path = ip.run_line_magic("model_download", f"{url} --dir {out}")
    assert path == out / "a.bin"
    assert isinstance(path, Path)
    assert path.read_bytes() == payload(SIZE, seed=len("a.bin"))
    stdout = capsys.readouterr().out
    assert "\r" not in stdout  # not a terminal: a line per status (redrawn in place on one)
    assert "a.bin — completed · 600.0 kB / 600.0 kB · 100%\n" in stdout
    assert stdout.rstrip().endswith(f"completed: {path}")


def test_assignment_form_binds_the_path(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    ip.user_ns["url"] = add(server, "b.bin")
    run(ip, f"path = %model_download {{url}} --dir {out}")
    assert ip.user_ns["path"] == out / "b.bin"


def test_several_references_return_a_list_of_paths(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    urls = [add(server, "c1.bin"), add(server, "c2.bin")]
    paths = ip.run_line_magic("model_download", f"{urls[0]} --dir {out} {urls[1]}")
    assert paths == [out / "c1.bin", out / "c2.bin"]


def test_line_expands_python_variables(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    ip.user_ns.update(url=add(server, "d.bin"), target=str(out))
    run(ip, "path = %model_download {url} --dir {target}")
    assert ip.user_ns["path"] == out / "d.bin"


def test_cell_form_takes_one_reference_per_line_and_expands_variables(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    ip.user_ns.update(first=add(server, "e1.bin"), base=server.url(""))
    cell = f"%%model_download --dir {out} --quiet\n# a comment\n{{first}}\n\n{{base}}e2.bin\n"
    add(server, "e2.bin")
    result = run(ip, cell)
    assert result == [out / "e1.bin", out / "e2.bin"]
    assert (out / "e2.bin").exists()


def test_background_returns_the_job_at_once(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    url = add(server, "f.bin", rate=400_000)
    started = time.monotonic()
    job = ip.run_line_magic("model_download", f"-b {url} --dir {out} --connections 1")
    assert isinstance(job, nbmodels.Job)
    assert time.monotonic() - started < 1.0 and not job.done
    jobs = ip.run_line_magic("model_download", f"--background {url} --dir {out} --connections 1")
    assert jobs is job  # the same running reference is the same job
    assert job.wait(30) == out / "f.bin"


def test_background_with_several_references_returns_a_list_of_jobs(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    urls = [add(server, "g1.bin"), add(server, "g2.bin")]
    jobs = ip.run_line_magic("model_download", f"-b {urls[0]} {urls[1]} --dir {out}")
    assert [type(j) for j in jobs] == [nbmodels.Job, nbmodels.Job]
    assert [j.wait(30) for j in jobs] == [out / "g1.bin", out / "g2.bin"]


# -- every flag ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("--dir models", {"dir": "models"}),
        ("--revision v1.0", {"revision": "v1.0"}),
        ("--include '*.gguf' --include a,b", {"include": ("*.gguf", "a,b")}),
        ("--exclude '*.md'", {"exclude": ("*.md",)}),
        ("--sha256 " + "ab" * 32, {"sha256": "ab" * 32}),
        ("--force", {"force": True}),
        ("--connections 3", {"connections": 3}),
        ("--offline", {"offline": True}),
    ],
)
def test_each_flag_maps_to_its_option(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, flags: str, expected: dict[str, Any]
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def fake(ref: str, **options: Any) -> nbmodels.Job:
        seen.append((ref, options))
        raise nbmodels.NbmodelsError("stop here")

    monkeypatch.setattr(_magic, "download", fake)
    ip.run_line_magic("model_download", f"https://h.invalid/m.bin {flags}")
    ((ref, options),) = seen
    assert ref == "https://h.invalid/m.bin"
    assert options == {"display": False, **expected}  # text mode: the magic shows the job


def test_include_and_exclude_reach_the_job_split_on_commas(
    ip: InteractiveShell, server: FaultServer, out: Path
) -> None:
    url = add(server, "h.bin")
    line = f"-b {url} --dir {out} --include '*.gguf,*.json' --include x --exclude '*.md'"
    job = ip.run_line_magic("model_download", line)
    assert job.options.include == ("*.gguf", "*.json", "x")
    assert job.options.exclude == ("*.md",)
    job.wait(30)


def test_sha256_flag_verifies_and_a_mismatch_is_one_line(
    ip: InteractiveShell, server: FaultServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    url = add(server, "i.bin")
    good = hashlib.sha256(payload(SIZE, seed=len("i.bin"))).hexdigest()
    assert ip.run_line_magic("model_download", f"{url} --dir {out} --sha256 {'0' * 64}") is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("IntegrityError: ")
    assert not (out / "i.bin").exists()
    path = ip.run_line_magic("model_download", f"{url} --dir {out} --sha256 sha256:{good}")
    assert path == out / "i.bin"


def test_force_downloads_again(ip: InteractiveShell, server: FaultServer, out: Path) -> None:
    url = add(server, "j.bin")
    ip.run_line_magic("model_download", f"{url} --dir {out} -q")
    job = ip.run_line_magic("model_download", f"-b {url} --dir {out}")
    job.wait(30)
    assert job.status == "already_downloaded"
    job = ip.run_line_magic("model_download", f"-b {url} --dir {out} --force --connections 2")
    job.wait(30)
    assert job.status == "completed" and job.options.connections == 2
    assert len(server.requests_for("j.bin")) >= 2


def test_offline_missing_file_is_one_line_and_no_request(
    ip: InteractiveShell, server: FaultServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = add(server, "k.bin")
    assert ip.run_line_magic("model_download", f"{url} --dir {out} --offline") is None
    err = capsys.readouterr().err
    assert err.startswith("OfflineError: ") and err.count("\n") == 1
    assert err.rstrip().endswith("(without --offline, and HF_HUB_OFFLINE unset).")
    assert server.requests_for("k.bin") == []


def test_disk_full_names_the_flag_and_what_is_kept(
    ip: InteractiveShell,
    server: FaultServer,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    from nbmodels.transfer import _partial

    url = add(server, "full.bin")
    written = [0]

    def pwrite(fd: int, chunk: bytes | memoryview, offset: int) -> int:
        if written[0] + len(chunk) > 100_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += len(chunk)
        return os.pwrite(fd, chunk, offset)

    monkeypatch.setattr(_partial, "_pwrite", pwrite)
    assert ip.run_line_magic("model_download", f"{url} --dir {out} --connections 1 -q") is None
    err = capsys.readouterr().err
    assert err.startswith(f"InsufficientSpaceError: Not enough disk space in {out}") and (
        err.count("\n") == 1
    )
    assert "the partial download (" in err and "is kept" in err
    assert err.rstrip().endswith("to resume, or choose a directory on another disk with --dir.")
    assert "dir=" not in err


def test_quiet_prints_nothing(
    ip: InteractiveShell, server: FaultServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = add(server, "l.bin")
    assert ip.run_line_magic("model_download", f"{url} --dir {out} --quiet") == out / "l.bin"
    assert capsys.readouterr() == ("", "")


# -- interrupt -----------------------------------------------------------------------------------


def test_interrupt_pauses_keeps_partial_data_and_rerun_resumes(
    ip: InteractiveShell,
    server: FaultServer,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = add(server, "m.bin", size=2_000_000, rate=500_000)
    real_step = _magic._wait_step

    def interrupted(job: nbmodels.Job, timeout: float) -> Path:
        if job.progress.downloaded_bytes < 200_000:
            return real_step(job, min(timeout, 0.05))
        raise KeyboardInterrupt  # what SIGINT raises in the waiting cell

    monkeypatch.setattr(_magic, "_wait_step", interrupted)
    assert ip.run_line_magic("model_download", f"{url} --dir {out} --connections 1") is None
    (job,) = nbmodels.jobs()
    deadline = time.monotonic() + 10
    while job.status != "paused" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.status == "paused"
    lines = capsys.readouterr().out.split("\n")
    assert lines[-2] == f"Paused {job.ref}; the partial data is kept. Run the cell again to resume."
    assert partial_paths(out / "m.bin")[0].exists()
    kept = job.progress.downloaded_bytes
    assert kept >= 200_000

    monkeypatch.setattr(_magic, "_wait_step", real_step)
    line = f"{url} --dir {out} --connections 1 -q"
    assert ip.run_line_magic("model_download", line) == out / "m.bin"
    assert nbmodels.jobs() == [job] and job.status == "completed"
    resumed = server.requests_for("m.bin")[-1]
    assert resumed.range is not None and not resumed.range.startswith("bytes=0-")


# -- errors: one line, no traceback --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "prefix"),
    [
        ("nope://model.bin", "RefError: "),
        ("{url404}", "NotFoundError: "),
        ("{url} --bogus", "%model_download: unrecognized arguments: --bogus"),
        ("{url} --connections 0", "%model_download: argument --connections: must be between"),
        ("{url} --connections many", "%model_download: argument --connections: invalid int"),
        ("{url} --sha256 xyz", "%model_download: argument --sha256: must be 64 hexadecimal"),
        ("", "%model_download: give at least one reference"),
        ("'unclosed", "%model_download: No closing quotation"),
    ],
)
def test_errors_print_one_line_and_return_none(
    ip: InteractiveShell,
    server: FaultServer,
    out: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    prefix: str,
) -> None:
    ip.user_ns.update(url=add(server, "n.bin"), url404=server.url("missing.bin"))
    result = ip.run_cell(f"r = %model_download {line} --dir {out} -q")
    assert result.success
    assert ip.user_ns["r"] is None
    captured = capsys.readouterr()
    assert captured.err.startswith(prefix)
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err + captured.out


# -- --inspect: the model card without a download -------------------------------------------------

BIG = "nbm-test/Big-GGUF"
BIG_SIZE = 16 * 1024 * 1024
DETAILS = (
    "architecture",
    "parameters",
    "quant",
    "context",
    "layers / heads",
    "tensors",
    "size",
    "chat template",
    "memory",
)


@pytest.fixture
def hub(hub: HubEmulator) -> HubEmulator:
    hub.add_gguf_repo(BIG, quants=("Q4_K_M",), size=BIG_SIZE, sidecars=())
    return hub


def test_inspect_prints_the_card_and_returns_it_without_downloading(
    ip: InteractiveShell, hub: HubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.clear_log()
    run(ip, f"card = %model_download --inspect {BIG}:Q4_K_M")
    card = ip.user_ns["card"]
    assert isinstance(card, ModelCard)
    assert (card.format, card.file_type, card.architecture) == ("gguf", "Q4_K_M", "llama")
    assert card.total_size_bytes == BIG_SIZE and not card.local
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == card.summary()
    assert lines[0].startswith("llama · 3.3K params · Q4_K_M · ctx 4096 · 16.8 MB · ")
    assert [line.split("  ")[1] for line in lines[1:]] == list(DETAILS)
    assert "  quant           Q4_K_M" in lines and "  chat template   yes" in lines
    cdn = [r for r in hub.requests if r.origin == "cdn"]
    assert cdn and all(r.range and r.range.startswith("bytes=") for r in cdn)
    assert sum(r.bytes_sent for r in cdn) < BIG_SIZE * 0.05  # a header, not the file
    assert nbmodels.jobs() == []  # no download was started
    assert not list((Path(os.environ["HF_HOME"])).rglob("*.gguf"))
    text = ip.display_formatter.format(card)[0]["text/plain"]
    assert text == f"<ModelCard '{BIG}:Q4_K_M' {card.summary()}>"  # a one-line Out


def test_inspect_takes_several_references_and_quiet(
    ip: InteractiveShell, hub: HubEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hub.standard is not None
    gguf, safetensors = f"{hub.standard.gguf}:Q4_K_M", hub.standard.safetensors
    cards = ip.run_line_magic("model_download", f"--inspect {gguf} {safetensors} -q")
    assert [(c.format, c.file_type) for c in cards] == [("gguf", "Q4_K_M"), ("safetensors", "F16")]
    assert capsys.readouterr() == ("", "")
    ip.run_line_magic("model_download", f"--inspect {gguf} {safetensors}")
    out = capsys.readouterr().out
    assert out.startswith(f"{gguf}\n{cards[0].summary()}\n  architecture")
    assert f"\n\n{safetensors}\n" in out and "\n  dtype           F16\n" in out
    assert nbmodels.jobs() == []


@pytest.mark.parametrize(
    ("line", "prefix"),
    [
        ("nbm-test/Tiny-GGUF:Q3_K_S", "NotFoundError: nbm-test/Tiny-GGUF has no Q3_K_S quant."),
        ("nbm-test/Tiny-GGUF:Q4_K_M --offline", "OfflineError: Offline, and "),
        ("nbm-test/gated-model", "AccessError: "),
        (
            "nbm-test/Tiny-GGUF:Q4_K_M --force -b",
            "%model_download: --inspect downloads nothing, so --force, --background do not apply",
        ),
        ("nbm-test/Tiny-GGUF:Q4_K_M --sha256 xyz", "%model_download: --inspect downloads nothing"),
        ("nope://x", "RefError: "),
        ("", "%model_download: give at least one reference"),
    ],
)
def test_inspect_errors_are_one_line(
    ip: InteractiveShell,
    hub: HubEmulator,
    capsys: pytest.CaptureFixture[str],
    line: str,
    prefix: str,
) -> None:
    hub.clear_log()
    result = ip.run_cell(f"r = %model_download --inspect {line}")
    assert result.success and ip.user_ns["r"] is None
    captured = capsys.readouterr()
    assert captured.err.startswith(prefix), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err + captured.out
    if "--offline" in line or line.startswith("%"):
        assert hub.requests == []


# -- help, panel, extension lifecycle ------------------------------------------------------------


def test_help_documents_every_flag_and_the_forms(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("%model_download?")
    shown = capsys.readouterr().out
    for flag in _cliopts.DOWNLOAD_FLAGS:
        assert flag.names[0] in shown
    for text in ("--background", "--quiet", "{var}", "pathlib.Path", "resume", "owner/repo"):
        assert text in shown
    assert "--inspect" in shown and "card = %model_download --inspect" in shown


def test_model_panel_without_widgets_lists_jobs_as_text(
    ip: InteractiveShell, server: FaultServer, out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("model_panel", "")
    assert capsys.readouterr().out == "No downloads yet.\n"
    ip.run_line_magic("model_download", f"{add(server, 'o.bin')} --dir {out} -q")
    ip.run_line_magic("model_panel", "")
    assert capsys.readouterr().out.startswith("o.bin — completed · 600.0 kB / 600.0 kB · 100%")


def test_reload_and_unload_are_clean(ip: InteractiveShell) -> None:
    from nbmodels.notebook._publisher import get_publisher

    ip.run_line_magic("reload_ext", "nbmodels")
    ip.run_line_magic("reload_ext", "nbmodels")
    assert ip.find_line_magic("model_download") is not None
    assert ip.find_cell_magic("model_download") is not None
    ip.run_line_magic("unload_ext", "nbmodels")
    assert ip.find_line_magic("model_download") is None
    assert ip.find_line_magic("model_panel") is None
    card = ModelCard("x", "gguf", ("x.gguf",), (1,), 1, 1, 1)
    assert ip.display_formatter.format(card)[0]["text/plain"].startswith("ModelCard(")
    assert not get_publisher().running
    assert "nbmodels-publisher" not in {t.name for t in threading.enumerate()}
    ip.run_line_magic("load_ext", "nbmodels")
    assert ip.find_line_magic("model_download") is not None


def test_loading_the_extension_silences_hub_progress_bars(ip: InteractiveShell) -> None:
    import os

    from huggingface_hub.utils import are_progress_bars_disabled

    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert are_progress_bars_disabled()


def test_widget_mode_displays_the_widget_instead_of_text(
    ip: InteractiveShell,
    server: FaultServer,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nbmodels.notebook import _display

    monkeypatch.setenv("NBMODELS_WIDGETS", "1")
    shown: list[object] = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    path = ip.run_line_magic("model_download", f"{add(server, 'p.bin')} --dir {out}")
    assert path == out / "p.bin"
    (widget,) = shown
    assert widget is _display.widget_for(nbmodels.jobs()[0])
    assert capsys.readouterr().out == ""  # no text progress: the widget shows it
    widget.close()


# -- the shared flag table -----------------------------------------------------------------------


def test_flag_table_names_only_real_options() -> None:
    from nbmodels._options import OPTION_NAMES

    for flag in _cliopts.DOWNLOAD_FLAGS:
        assert flag.option in OPTION_NAMES
        assert flag.names[0] == "--" + flag.option.replace("_", "-")


@pytest.mark.parametrize(
    ("words", "refs"),
    [
        (["owner/repo", "model.gguf"], ["owner/repo model.gguf"]),
        (
            ["hf:owner/repo#dev", "m.gguf", "other/repo:Q4_K_M"],
            ["hf:owner/repo#dev m.gguf", "other/repo:Q4_K_M"],
        ),
        (["a/b", "c/d"], ["a/b", "c/d"]),
        (["https://x.org/a", "b.gguf"], ["https://x.org/a", "b.gguf"]),
        (["owner/repo", "sub/file.gguf"], ["owner/repo", "sub/file.gguf"]),
        (["owner/repo a.gguf", "b.gguf"], ["owner/repo a.gguf", "b.gguf"]),
    ],
)
def test_two_word_references_are_grouped(words: list[str], refs: list[str]) -> None:
    assert _cliopts.group_refs(words) == refs


def test_parse_command_never_exits_and_keeps_options_separate() -> None:
    cmd = _cliopts.parse_command("a/b x.gguf --force -b", prog="nbmodels")
    assert cmd.refs == ("a/b x.gguf",) and cmd.options == {"force": True} and cmd.background
    with pytest.raises(_cliopts.UsageError, match=r"^nbmodels: unrecognized arguments: --nope$"):
        _cliopts.parse_command(["--nope"], prog="nbmodels")
    cli = _cliopts.parse_command(["u", "-q"], prog="nbmodels", background=False)
    assert cli.quiet and not cli.background
    with pytest.raises(_cliopts.UsageError):
        _cliopts.parse_command(["u", "-b"], prog="nbmodels", background=False)


# -- a kernel without the widget libraries (issue 12 item 3) --------------------------------------

#: Runs before anything else in the kernel process: anywidget and ipywidgets cannot be imported,
#: as in an environment where they are missing.
_NO_WIDGETS = (
    "import sys; sys.modules['anywidget'] = None; sys.modules['ipywidgets'] = None; "
    "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
)


def _kernel_without_widgets(data_dir: Path, *python_flags: str) -> str:
    """A kernelspec (in ``data_dir``) whose kernel cannot import anywidget nor ipywidgets."""
    spec = data_dir / "kernels" / "nbm-no-widgets"
    spec.mkdir(parents=True)
    argv = [sys.executable, *python_flags, "-c", _NO_WIDGETS, "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "no widgets", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return "nbm-no-widgets"


@pytest.mark.parametrize("python_flags", [(), ("-W", "error")], ids=["default", "W-error"])
def test_kernel_without_widget_libraries_shows_text_and_no_warning(
    python_flags: tuple[str, ...],
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without anywidget the magic and ``nbmodels.download`` fall back to the text line, and
    nothing else reaches the cell: huggingface_hub's tqdm (whose import warns "IProgress not
    found" in a kernel without ipywidgets) is never imported."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    a, b = add(server, "a.bin"), add(server, "b.bin", size=SIZE // 2)
    out = tmp_path / "out"
    for var in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("NBMODELS_WIDGETS", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    kernel = _kernel_without_widgets(tmp_path / "jupyter_data_dir", *python_flags)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in (
            "%load_ext nbmodels",
            f"path = %model_download {a} --dir {out}",
            f"import nbmodels\njob = nbmodels.download({b!r}, dir={str(out)!r})\njob.wait()\njob",
            "%model_panel",
            "try:\n    nbmodels.panel()\nexcept ImportError as exc:\n    print(exc)",
            "import sys\n"
            "print('loaded:', sorted(m for m in ('anywidget', 'ipywidgets', 'tqdm',"
            " 'huggingface_hub.utils.tqdm') if sys.modules.get(m) is not None))",
        )
    ]
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [o for cell in nb.cells for o in cell.outputs]
    assert [o for o in outputs if o["output_type"] == "error"] == []
    assert [o["text"] for o in outputs if o.get("name") == "stderr"] == []
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    magic = "".join(o["text"] for o in nb.cells[1].outputs)
    assert "\ra.bin — completed · 600.0 kB / 600.0 kB · 100%" in magic
    assert magic.endswith(f"completed: {out / 'a.bin'}\n")
    (job_out,) = [o for o in nb.cells[2].outputs if o["output_type"] == "execute_result"]
    assert job_out["data"]["text/plain"].startswith("b.bin — completed · 300.0 kB / 300.0 kB")
    assert "a.bin — completed" in "".join(o["text"] for o in nb.cells[3].outputs)
    panel = nb.cells[4].outputs[0]["text"]
    assert panel.startswith("nbmodels.panel() needs anywidget, which cannot be imported here")
    assert panel.endswith("`pip install anywidget` (or reinstall nbmodels); meanwhile "
                          "%model_panel lists the jobs as text.\n")
    assert nb.cells[5].outputs[0]["text"] == "loaded: []\n"
    assert (out / "a.bin").read_bytes() == payload(SIZE, seed=len("a.bin"))
