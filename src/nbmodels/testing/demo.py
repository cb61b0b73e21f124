"""The embedded default: ``python -m nbmodels.testing.demo`` (``make demo``).

Starts the local Hub emulator with generated demo models (a few hundred MB, throttled per
connection so progress is visible), points nbmodels at it, and runs the main job: download a
GGUF quant, a split quant and a safetensors snapshot, show live progress, verify, resume after a
pause, and prove huggingface_hub finds the files offline. Nothing here reaches an outside host:
the only servers are on 127.0.0.1, and ``HF_ENDPOINT`` is set to the emulator before anything
else runs.

Options: ``--scale 0.2`` (smaller models), ``--rate 40`` (MB/s per connection), ``--keep``
(keep ``.demo/`` afterwards), ``--home DIR`` (where the cache goes; default ``./.demo``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbmodels.testing import DemoRepos, HubEmulator


def _line(text: str) -> None:
    width = shutil.get_terminal_size((100, 20)).columns - 1
    end = "\r" if sys.stdout.isatty() else "\n"
    sys.stdout.write(text[:width].ljust(width) + end if end == "\r" else text + end)
    sys.stdout.flush()


def _follow(job: object, label: str) -> Path:
    """Print the job's progress (twice a second) until it ends; return its path."""
    from nbmodels import Job, NbmodelsError, format_progress

    assert isinstance(job, Job)
    tty = sys.stdout.isatty()
    next_line = 0.0
    while not job.done:
        snap = job.snapshot()
        text = f"{label}: {snap.status:<11} {format_progress(snap.progress, status=snap.status)}"
        if tty or time.monotonic() >= next_line:  # a line every 2 s when not a terminal
            _line(text)
            next_line = time.monotonic() + 2.0
        time.sleep(0.5)
    try:
        path = job.wait()
    except NbmodelsError as exc:
        _line(f"{label}: failed — {exc}")
        raise
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    snap = job.snapshot()
    text = format_progress(snap.progress, status=snap.status)
    print(f"{label}: {snap.status}" + (f" · {text}" if text else ""))
    print(f"    -> {path}")
    return path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nbmodels.testing.demo", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="demo model size factor")
    parser.add_argument("--rate", type=float, default=20.0, help="MB/s per CDN connection")
    parser.add_argument("--home", type=Path, default=Path(".demo"), help="where caches go")
    parser.add_argument("--keep", action="store_true", help="keep the caches afterwards")
    return parser.parse_args(argv)


def _isolate(home: Path) -> None:
    """Caches under ``home`` (emptied first), before nbmodels or huggingface_hub is imported."""
    shutil.rmtree(home, ignore_errors=True)
    os.environ.update(
        {
            "NBMODELS_HOME": str(home / "nbmodels"),
            "HF_HOME": str(home / "huggingface"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    )
    os.environ.pop("HF_HUB_CACHE", None)
    os.environ.pop("HF_HUB_OFFLINE", None)


def _tour(hub: HubEmulator, ids: DemoRepos, home: Path) -> None:
    """The main job: a quant, a split quant paused and resumed, a safetensors snapshot, the
    first quant again (no transfer), and huggingface_hub finding it offline."""
    import nbmodels

    q4 = _follow(nbmodels.download(f"hf:{ids.gguf}:Q4_K_M", display=False), "Q4_K_M")
    job = nbmodels.download(f"hf:{ids.gguf}:Q8_0", display=False)
    while job.progress.downloaded_bytes < 5_000_000 and not job.done:
        time.sleep(0.1)
    job.pause()
    print(f"Q8_0: paused at {job.progress.downloaded_bytes:,} bytes (partial data kept)")
    time.sleep(1)
    job.resume()
    q8 = _follow(job, "Q8_0 (2 parts)")
    snap = _follow(nbmodels.download(ids.safetensors, display=False), "safetensors repo")
    hub.clear_log()
    again = nbmodels.download(f"hf:{ids.gguf}:Q4_K_M", display=False)
    again.wait()
    print(f"Again: {again.status} with {len(hub.requests)} network requests.")

    from huggingface_hub import hf_hub_download

    theirs = hf_hub_download(
        ids.gguf, q4.name, local_files_only=True, cache_dir=home / "huggingface" / "hub"
    )
    print(f"huggingface_hub finds it offline: {theirs == str(q4)}")
    print()
    print("History:")
    for j in nbmodels.history():
        print(f"  {j.id}  {j.status:<18} {j.ref}")
    print()
    print(f"Files: {q4}\n       {q8}\n       {snap}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    home = args.home.resolve()
    _isolate(home)
    from nbmodels import NbmodelsError
    from nbmodels.testing import HubEmulator, demo_repos

    with HubEmulator() as hub:
        ids = demo_repos(hub, scale=args.scale)
        hub.throttle = int(args.rate * 1_000_000)
        os.environ["HF_ENDPOINT"] = hub.endpoint
        print(
            f"Local Hub emulator at {hub.endpoint} (CDN {hub.cdn_url}), "
            f"throttled to {args.rate:g} MB/s per connection."
        )
        try:
            _tour(hub, ids, home)
        except NbmodelsError as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    if not args.keep:
        from nbmodels.engine import get_engine

        get_engine().close()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
