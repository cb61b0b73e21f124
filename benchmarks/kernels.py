"""N kernels asking for the same file at once: bytes from the CDN and time until every kernel
has its path, with the Jupyter server's engine (the default under a server with the
extension) and with each kernel's own engine (``NBMODELS_ENGINE=local``).

    .venv/bin/python benchmarks/kernels.py                      # 2, 4, 8 kernels; ~2 minutes
    .venv/bin/python benchmarks/kernels.py --kernels 2 4 --size 64MiB --runs 3

Everything runs on 127.0.0.1: the local Hub emulator (in this process) serves one generated
file per run (never the same file twice, so nothing is on disk yet), its CDN throttled per TCP
connection (``--rate``); one real ``jupyter server`` per mode (the test suite's
``tests/servers.py``), with the nbmodels extension installed in ``.venv``; the kernels are
started through the server's REST API and driven with jupyter_client (``tests/kernels.py``).
Per mode the largest number of kernels is started once, each imports nbmodels (not timed); a
run then sends ``nbmodels.resolve(ref)`` to the first N of them one right after the other, and
each kernel prints the time it got its path. All-ready = the last of those times minus the
moment the first cell was sent. CDN bytes are the body bytes the emulator's CDN sent for that
file (its request log). Every kernel's path and the file's bytes are checked afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kernels import Kernel, server_kernel  # noqa: E402
from tests.servers import TOKEN, start_jupyter  # noqa: E402

from nbmodels.testing import GeneratedFile, HubEmulator  # noqa: E402

REPO = "nbm-bench/shared"
CELL = """\
import time, nbmodels
_p = nbmodels.resolve({ref!r})
print("READY", time.time(), _p, flush=True)
"""
MODES = {"server": "server engine (auto)", "local": "kernel engines (NBMODELS_ENGINE=local)"}


def size_arg(text: str) -> int:
    units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "MB": 10**6, "GB": 10**9}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def one_run(kernels: list[Kernel], hub: HubEmulator, name: str, size: int) -> dict[str, Any]:
    ref = f"hf:{REPO}/{name}"
    t0 = time.time()
    sent = [k.send(CELL.format(ref=ref)) for k in kernels]
    outs = [k.collect(msg, timeout=3600) for k, msg in zip(kernels, sent, strict=True)]
    ready, paths = [], set()
    for out in outs:
        if out.error:
            raise RuntimeError(out.error)
        at, path = out.value("READY").split(" ", 1)
        ready.append(float(at) - t0)
        paths.add(path)
    if len(paths) != 1:
        raise RuntimeError(f"the kernels got different paths: {paths}")
    (path,) = paths
    if Path(path).stat().st_size != size:
        raise RuntimeError(f"{path} has the wrong size")
    time.sleep(1.0)  # the emulator logs an answer once its connection is done with it
    gets = [r for r in hub.requests if r.origin == "cdn" and r.file_path == name]
    return {
        "all_ready_s": round(max(ready), 3),
        "first_ready_s": round(min(ready), 3),
        "cdn_bytes": sum(r.bytes_sent for r in gets),
        "cdn_requests": len(gets),
    }


def file_names(args: argparse.Namespace) -> list[str]:
    """One file per run, so that no run finds its file on disk already."""
    return [f"{mode}-{n}-{run}.bin" for mode in args.modes for n in args.kernels
            for run in range(args.runs)]  # fmt: skip


def start_kernels(mode: str, server: Any, runtime: Path, count: int) -> list[Kernel]:
    root = server.base[: -len("nbmodels")]
    headers = {"Authorization": f"token {TOKEN}"}
    kernels = []
    for _ in range(count):
        kernels.append(server_kernel(root, headers, runtime))
    setup = "import os\n"
    if mode == "local":
        setup += "os.environ['NBMODELS_ENGINE'] = 'local'\n"
    setup += "import nbmodels, nbmodels.remote\n"
    setup += "print('ENGINE', type(nbmodels.remote.current_engine()).__name__)"
    engines = {k.run(setup).value("ENGINE") for k in kernels}
    print(f"{MODES[mode]}: the kernels use {engines}", flush=True)
    return kernels


def run_mode(
    mode: str, hub: HubEmulator, args: argparse.Namespace, out: list[dict[str, Any]]
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"nbm-kernels-{mode}-"))
    server = start_jupyter(tmp, hub.endpoint, base_url="/")
    kernels: list[Kernel] = []
    try:
        kernels = start_kernels(mode, server, tmp / "jupyter" / "runtime", max(args.kernels))
        for n in args.kernels:
            for run in range(args.runs):
                result = one_run(kernels[:n], hub, f"{mode}-{n}-{run}.bin", args.size)
                result.update(mode=mode, kernels=n, run=run)
                out.append(result)
                print(json.dumps(result), flush=True)
    finally:
        for k in kernels:
            k.shutdown()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--size", type=size_arg, default=size_arg("512MiB"))
    parser.add_argument("--rate", type=size_arg, default=size_arg("5MB"),
                        help="CDN bytes/s per TCP connection (default 5MB)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "out" / "kernels.json")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with HubEmulator() as hub:
        hub.add_repo(REPO, {n: GeneratedFile(args.size, seed=n) for n in file_names(args)})
        hub.set_throttle(args.rate)
        for mode in args.modes:
            run_mode(mode, hub, args, results)
    table(results, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {"size": args.size, "rate": args.rate, "results": results}
    args.json.write_text(json.dumps(summary, indent=1))


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nfile {args.size / 2**20:.0f} MiB, CDN {args.rate / 1e6:.0f} MB/s per connection, "
          f"median of {args.runs} run(s)\n")  # fmt: skip
    print("| kernels | engine | all ready (s) | first ready (s) | CDN bytes (× file) | requests |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.kernels:
        for mode in args.modes:
            rows = [r for r in results if r["kernels"] == n and r["mode"] == mode]
            if not rows:
                continue
            keys = ("all_ready_s", "first_ready_s", "cdn_bytes", "cdn_requests")
            med = {k: statistics.median(r[k] for r in rows) for k in keys}
            print(
                f"| {n} | {MODES[mode]} | {med['all_ready_s']:.2f} | {med['first_ready_s']:.2f} "
                f"| {med['cdn_bytes'] / args.size:.2f} | {med['cdn_requests']:.0f} |"
            )


if __name__ == "__main__":
    main()
