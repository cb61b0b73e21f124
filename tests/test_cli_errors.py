"""Errors as a user meets them (issue 12, items 5, 6 and 8): file-system errors are one line
without a traceback, bad input exits 2 before anything starts, and a message names an option in
the form of the front end that shows it (``dir=`` in Python, ``--dir`` in the CLI and magic).

The CLI runs as a real subprocess against the Hub emulator; read-only places are real: a
``chmod 0555`` directory, or (as root, whom chmod does not stop) a read-only tmpfs mount.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import errno
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbmodels
from nbmodels._fserrors import describe_os_error, fs_error
from nbmodels._options import Options, OptionValueError
from nbmodels.engine import _engine
from nbmodels.errors import InsufficientSpaceError, NbmodelsError, Option
from nbmodels.testing import HubEmulator
from nbmodels.transfer import _partial
from tests.conftest import FAST, payload
from tests.faultserver import FaultServer

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "nbmodels"
GGUF = "nbm-test/Tiny-GGUF"
BIG = "nbm-test/Big-GGUF"  # one 16 MiB quant (added to the standard repos)
MIB = 1024 * 1024


@pytest.fixture
def hub(hub: HubEmulator) -> HubEmulator:
    hub.add_gguf_repo(BIG, quants=("Q4_K_M",), size=16 * MIB, sidecars=())
    return hub


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m nbmodels ARGS`` with this test's environment (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "nbmodels", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC.parent), **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr (no traceback, nothing else)."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    mount = shutil.which("mount") or "mount"
    return subprocess.run([mount, *args], capture_output=True, timeout=30, check=False)


def _umount(path: Path) -> None:
    umount = shutil.which("umount") or "umount"
    if subprocess.run([umount, str(path)], capture_output=True, timeout=30).returncode:
        subprocess.run([umount, "-l", str(path)], capture_output=True, timeout=30)


def _writable(path: Path) -> bool:
    probe = path / ".probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only_view(source: Path, where: Path) -> Iterator[Path]:
    """``source`` seen read-only: for a normal user, ``source`` itself with the write
    permission of its directories removed (given back afterwards); as root, whom permissions
    do not stop, a read-only bind mount of it at ``where`` (unmounted afterwards). Skips the
    test when neither is possible."""
    if os.geteuid() != 0:
        dirs = [source, *(p for p in source.rglob("*") if p.is_dir() and not p.is_symlink())]
        modes = {d: d.stat().st_mode for d in dirs}
        for d in dirs:
            d.chmod(0o555)
        try:
            if _writable(source):
                pytest.skip("removing the write permission does not stop writes here")
            yield source
        finally:
            for d, mode in modes.items():
                d.chmod(mode)
        return
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("as root, a read-only directory needs a read-only mount (Linux, mount)")
    where.mkdir(parents=True, exist_ok=True)
    done = _mount("--bind", str(source), str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode(errors='replace')}")
    try:
        done = _mount("-o", "remount,bind,ro", str(where))
        if done.returncode != 0 or _writable(where):
            pytest.skip(f"cannot make a mount read-only: {done.stderr.decode(errors='replace')}")
        yield where
    finally:
        _umount(where)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """An empty directory that cannot be written (see :func:`read_only_view`)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only_view(empty, tmp_path / "ro") as view:
        yield view


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (Linux and root; skipped elsewhere). Unmounted afterwards."""
    if sys.platform != "linux" or shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs Linux and root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = _mount("-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        _umount(mnt)


DENIED = re.compile(r"is read-only\.|Permission denied: ")


# -- 5. file-system errors: one line, the right words -------------------------------------------


@pytest.mark.parametrize("below", ["", "sub/dir"], ids=["the-file", "below-the-file"])
def test_dir_naming_a_file_is_one_line(hub: HubEmulator, tmp_path: Path, below: str) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"mine")
    done = cli("pull", f"{GGUF}:Q4_K_M", "--dir", str(afile / below), "-q")
    assert done.returncode == 1
    assert one_error_line(done) == (
        f"nbmodels: error: {afile} is a file, not a directory. "
        "Choose a directory you can write to with --dir."
    )
    assert afile.read_bytes() == b"mine"


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_dir_that_cannot_be_created_is_one_line(hub: HubEmulator) -> None:
    done = cli("pull", f"{GGUF}:Q4_K_M", "--dir", "/proc/nbmodels-test/x", "-q")
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith("nbmodels: error: Cannot create /proc/nbmodels-test")
    assert line.endswith("Choose a directory you can write to with --dir.")


def test_read_only_dir_is_one_line(hub: HubEmulator, read_only: Path) -> None:
    done = cli("pull", f"{GGUF}:Q4_K_M", "--dir", str(read_only / "models"), "-q")
    assert done.returncode == 1
    line = one_error_line(done)
    assert DENIED.search(line) and str(read_only) in line, line
    assert line.endswith("Choose a directory you can write to with --dir.")
    assert list(read_only.iterdir()) == []


def test_read_only_hf_home_is_one_line_naming_hf_home(hub: HubEmulator, read_only: Path) -> None:
    done = cli("pull", f"{GGUF}:Q4_K_M", "-q", HF_HOME=str(read_only))
    assert done.returncode == 1
    line = one_error_line(done)
    assert DENIED.search(line) and str(read_only) in line, line
    assert "Set HF_HOME (or HF_HUB_CACHE) to a directory you can write to" in line
    assert line.endswith("or download into one with --dir.")


def test_read_only_nbmodels_home_warns_once_and_the_download_goes_on(
    hub: HubEmulator, read_only: Path
) -> None:
    done = cli("pull", f"{GGUF}:Q4_K_M", "-q", NBMODELS_HOME=str(read_only))
    assert done.returncode == 0, done.stderr
    line = one_error_line(done)
    assert line.startswith("nbmodels: job history is not being saved: "), line
    assert DENIED.search(line) and str(read_only) in line
    assert "set NBMODELS_HOME to a directory you can write to" in line
    assert Path(done.stdout.splitlines()[-1]).name == "Tiny-Q4_K_M.gguf"
    listed = cli("jobs", NBMODELS_HOME=str(read_only))
    assert listed.returncode == 0
    assert one_error_line(listed).startswith("nbmodels: job history is not being saved: ")
    assert listed.stdout == "No downloads yet.\n"


def test_nbmodels_home_that_is_a_file_warns_once(hub: HubEmulator, tmp_path: Path) -> None:
    afile = tmp_path / "home-file"
    afile.write_bytes(b"")
    done = cli("pull", f"{GGUF}:Q4_K_M", "-q", NBMODELS_HOME=str(afile))
    assert done.returncode == 0, done.stderr
    assert one_error_line(done) == (
        f"nbmodels: job history is not being saved: {afile} is a file, not a directory. "
        "Downloads go on; to keep the history, set NBMODELS_HOME to a directory you can "
        "write to."
    )


def test_rm_in_a_read_only_cache_is_one_line(hub: HubEmulator, tmp_path: Path) -> None:
    assert cli("pull", f"{GGUF}:Q4_K_M", "-q").returncode == 0
    with read_only_view(Path(os.environ["HF_HOME"]), tmp_path / "view") as view:
        done = cli("rm", GGUF, HF_HOME=str(view))
        assert done.returncode == 1
        line = one_error_line(done)
        assert DENIED.search(line) and str(view) in line, line
        assert line.endswith("Check the permissions of that place (and its mount).")


def test_history_keeps_this_processs_jobs_when_it_cannot_be_saved(
    server: FaultServer, read_only: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_file("h.bin", payload(1000))
    eng = _engine.Engine(FAST, home=read_only)
    previous = _engine.set_engine(eng)
    try:
        jobs = [
            nbmodels.download(server.url("h.bin"), dir=tmp_path / d, display=False)
            for d in ("a", "b")
        ]
        for job in jobs:
            job.wait(30)
        assert [j.id for j in nbmodels.history()] == [j.id for j in reversed(jobs)]
    finally:
        eng.close()
        _engine.set_engine(previous)
    said = [r for r in caplog.records if "job history is not being saved" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is None
    assert [r for r in caplog.records if r.exc_info] == []


def test_os_errors_read_as_facts(tmp_path: Path) -> None:
    """The translation itself, for causes a test cannot easily make real."""
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    assert describe_os_error(denied) == f"Permission denied: {tmp_path}."
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a" / "b"))
    assert describe_os_error(full) == f"No space left on the disk of {tmp_path}."
    assert fs_error(full).render("flags").endswith("on another disk with --dir.")
    odd = OSError(errno.ENAMETOOLONG, "File name too long", str(tmp_path / "n"))
    assert describe_os_error(odd) == f"File system error at {tmp_path / 'n'}: File name too long."
    assert describe_os_error(OSError("bare")) == "File system error: bare."


# -- 6. bad input is a usage error: exit 2, nothing started --------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["not a/valid ref at all"], "nbmodels: error: Invalid model reference"),
        (["hf:owner//repo"], "nbmodels: error: Invalid model reference"),
        ([GGUF, "--sha256", "deadbeef"], "nbmodels pull: error: argument --sha256: must be 64"),
        ([GGUF, "--connections", "0"], "nbmodels pull: error: argument --connections: must be"),
        ([GGUF, "--revision", " "], "nbmodels pull: error: argument --revision: must be"),
    ],
    ids=["ref", "empty-repo", "sha256", "connections", "revision"],
)
def test_bad_input_exits_2_and_starts_nothing(hub: HubEmulator, args: list[str], says: str) -> None:
    done = cli("pull", f"{GGUF}:Q8_0", *args, "-q")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(says), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert hub.requests == []  # not even the good reference started


@pytest.mark.parametrize("command", ["rm", "verify", "inspect"])
def test_an_invalid_reference_exits_2_in_every_command(hub: HubEmulator, command: str) -> None:
    done = cli(command, "bad::ref")
    assert done.returncode == 2
    assert one_error_line(done).startswith("nbmodels: error: Invalid model reference 'bad::ref'")


def test_option_errors_name_the_option_per_front_end() -> None:
    with pytest.raises(OptionValueError) as info:
        Options.create(connections=0)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "connections must be between 1 and 64, got 0"
    assert info.value.render("flags") == "argument --connections: must be between 1 and 64, got 0"
    with pytest.raises(OptionValueError, match="connections must be a whole number"):
        Options.create(connections="many")
    with pytest.raises(OptionValueError, match="exclude patterns must be non-empty"):
        Options.create(exclude=[""])


# -- 8. disk full: the option in the front end's form; "kept" only when something was -----------


def test_disk_too_small_from_the_cli_names_the_flag_and_keeps_nothing(
    hub: HubEmulator, small_disk: Path
) -> None:
    done = cli("pull", f"{BIG}:Q4_K_M", "--dir", str(small_disk), "-q")
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"nbmodels: error: Not enough disk space in {small_disk}")
    assert "nothing was written" in line and "kept" not in line and "resume" not in line
    assert line.endswith("or choose a directory on another disk with --dir.")
    assert "dir=" not in line


def test_disk_too_small_from_python_names_the_keyword(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("m.bin", payload(100_000))
    eng = _engine.Engine(
        dataclasses.replace(FAST, space_margin=1 << 62), home=Path(os.environ["NBMODELS_HOME"])
    )
    previous = _engine.set_engine(eng)
    try:
        job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out")
        with pytest.raises(InsufficientSpaceError) as info:
            job.wait(30)
    finally:
        eng.close()
        _engine.set_engine(previous)
    message = str(info.value)
    assert "nothing was written" in message and "kept" not in message
    assert message.endswith("or choose a directory on another disk with dir=.")
    assert info.value.suggests == ("dir",)
    assert info.value.render("flags").endswith("on another disk with --dir.")
    assert job.to_dict()["error"] == message


def test_disk_full_mid_way_says_what_is_kept(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = payload(3 * MIB)
    server.add_file("m.bin", data)
    written = [0]

    def pwrite(fd: int, chunk: bytes | memoryview, offset: int) -> int:
        if written[0] + len(chunk) > MIB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += len(chunk)
        return os.pwrite(fd, chunk, offset)

    monkeypatch.setattr(_partial, "_pwrite", pwrite)
    job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out", connections=1)
    with pytest.raises(InsufficientSpaceError) as info:
        job.wait(30)
    message = str(info.value)
    assert re.search(r"the partial download \([\d.]+ [kM]B\) is kept\.", message), message
    assert "run the download again to resume" in message and message.endswith("with dir=.")


# -- every message that names an option names it structurally -----------------------------------

#: Front ends (besides every ``_cli*`` module), which spell their own options.
FRONT_ENDS = ("notebook/_magic",)
OPTION_TEXT = re.compile(
    r"\b(dir|revision|include|exclude|sha256|force|connections|token|offline)="
    r"|--(dir|revision|include|exclude|sha256|force|connections|offline)\b"
)


def _error_call_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String pieces passed to any ``...Error(...)`` call."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if not name.endswith("Error"):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def test_no_error_message_spells_an_option_as_text() -> None:
    """An option in a message is an :class:`Option`, so each front end can spell it."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("").as_posix()
        if rel.startswith(("testing/", "_cli")) or rel in FRONT_ENDS:
            continue
        for line, text in _error_call_strings(ast.parse(path.read_text())):
            if OPTION_TEXT.search(text):
                found.append(f"{rel}.py:{line}: {text!r}")
    assert found == []


def test_an_option_renders_in_each_front_ends_form() -> None:
    err = NbmodelsError(
        "Offline.",
        hint=("Go online (without ", Option("offline", switch=True), ") or use ", Option("dir")),
    )
    assert str(err) == "Offline. Go online (without offline=True) or use dir="
    assert err.render("flags") == "Offline. Go online (without --offline) or use --dir"
    assert err.hint == "Go online (without offline=True) or use dir="
    assert err.suggests == ("offline", "dir")
    plain = NbmodelsError("Fact.", hint="Next step.")
    assert plain.render("flags") == str(plain) == "Fact. Next step." and plain.suggests == ()


# -- the magic, in a real terminal IPython --------------------------------------------------------


def ipython(lines: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Terminal IPython reading ``lines`` from a pipe (stdout is not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "IPython", "--simple-prompt", "--quick", "--no-banner",
         "--colors=NoColor", "--HistoryManager.enabled=False"],
        input="\n".join([*lines, "exit"]) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC.parent), "NBMODELS_WIDGETS": "0", **env},
        cwd=ROOT,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_magic_file_system_errors_are_one_line(hub: HubEmulator, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"mine")
    done = ipython(
        ["%load_ext nbmodels", f"r = %model_download {GGUF}:Q4_K_M --dir {afile} -q", "r is None"]
    )
    assert done.returncode == 0, done.stderr
    assert "Out[3]: True" in done.stdout
    assert one_error_line(done) == (
        f"NbmodelsError: {afile} is a file, not a directory. "
        "Choose a directory you can write to with --dir."
    )


def test_magic_with_a_read_only_history_warns_once_and_downloads(
    hub: HubEmulator, read_only: Path
) -> None:
    done = ipython(
        ["%load_ext nbmodels", f"p = %model_download {GGUF}:Q4_K_M -q", "p.name"],
        NBMODELS_HOME=str(read_only),
    )
    assert done.returncode == 0, done.stderr
    assert "Out[3]: 'Tiny-Q4_K_M.gguf'" in done.stdout
    line = one_error_line(done)
    assert line.startswith("nbmodels: job history is not being saved: ") and DENIED.search(line)
