"""Does a Jupyter kernel stay responsive while nbmodels downloads at full speed?

    .venv/bin/python benchmarks/responsiveness.py            # 2 GiB over loopback, ~1 minute
    .venv/bin/python benchmarks/responsiveness.py --size 256MiB --pings 100

Starts an ipykernel (jupyter_client ``KernelManager``; installs jupyter_client / ipykernel into
this venv when missing), imports nbmodels in it, then measures the round trip of a trivial cell
(``1+1``: execute_request sent to execute_reply received) -- first idle, then while
``job = nbmodels.download(URL, dir=..., display=False)`` runs in the same kernel, once without
and once with sha256 verification. The file is served by nginx on 127.0.0.1 (unthrottled), as
in ``benchmarks/run.py``, whose helpers this reuses (test file cache, nginx, cleanup).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench


def ensure_jupyter() -> None:
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError:
        bench.log(f"installing jupyter_client and ipykernel into {sys.prefix}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "jupyter_client", "ipykernel"],
            check=True,
        )


def execute(kc: Any, code: str, timeout: float = 120.0) -> tuple[float, dict[str, Any]]:
    """Run ``code``; return the round trip (request sent to reply received) and the reply."""
    t0 = time.perf_counter()
    msg_id = kc.execute(code, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return time.perf_counter() - t0, reply


def drain_iopub(kc: Any) -> None:
    while True:
        try:
            kc.get_iopub_msg(timeout=0)
        except Exception:  # queue.Empty
            return


def evaluate(kc: Any, expr: str) -> Any:
    """The value of ``expr`` in the kernel (via a JSON-printing cell)."""
    msg_id = kc.execute(f"import json as _j; print(_j.dumps({expr}))", store_history=False)
    out = ""
    while True:
        msg = kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        elif msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return json.loads(out)


def stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "max_ms": ms[-1],
    }


def pings(kc: Any, n: int, gap: float) -> list[float]:
    out = []
    for _ in range(n):
        out.append(execute(kc, "1+1")[0])
        drain_iopub(kc)
        time.sleep(gap)
    return out


def during_download(
    kc: Any, url: str, target_dir: Path, name: str, sha: str | None, gap: float
) -> tuple[list[float], float, dict[str, Any]]:
    """Start the job in the kernel, ping until its file is published, then collect the job."""
    target_dir.mkdir(parents=True)
    opts = f"dir={str(target_dir)!r}, display=False" + (f", sha256={sha!r}" if sha else "")
    final = target_dir / name
    t0 = time.perf_counter()
    execute(kc, f"job = nbmodels.download({url!r}, {opts})")
    samples = []
    while not final.exists():
        samples.append(execute(kc, "1+1")[0])
        drain_iopub(kc)
        time.sleep(gap)
        if time.perf_counter() - t0 > 600:
            raise RuntimeError("download did not finish in 600 s")
    # The file is published once complete (and verified); wait for the job to settle.
    info = evaluate(
        kc,
        "{'path': str(job.wait()), 'status': job.status, 'job_seconds': "
        "(job.completed_at - job.started_at).total_seconds() "
        "if job.completed_at and job.started_at else None}",
    )
    elapsed = time.perf_counter() - t0
    return samples, elapsed, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=list(bench.FILES), default="2GiB")
    p.add_argument("--pings", type=int, default=200, help="idle round trips (default 200)")
    p.add_argument("--gap", type=float, default=0.01, help="seconds between pings (0.01)")
    p.add_argument("--downloads", type=int, default=3, help="downloads per mode (default 3)")
    p.add_argument("--no-install", action="store_true")
    args = p.parse_args()
    if not args.no_install:
        bench.ensure_deps(skip_install=False)
        ensure_jupyter()
    from jupyter_client import KernelManager

    bench.OUT.mkdir(parents=True, exist_ok=True)
    bench.Resources.leftovers()
    atexit.register(bench.RES.cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data, sha = bench.ensure_file(f"f{args.size}", bench.FILES[args.size])
    bench.warm(data)
    size = data.stat().st_size
    server = bench.Nginx("responsiveness", "127.0.0.1", bench.free_port())
    server.start()
    work = Path(tempfile.mkdtemp(prefix="responsiveness-", dir=bench.OUT))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(no_proxy="*", NO_PROXY="*", NBMODELS_HOME=str(work / "home"))
    # IPC (unix sockets) rather than TCP: nothing listens on the network at all.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(work / "kernel"))
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    results: dict[str, Any] = {"size": size, "url": server.url(data.name)}
    try:
        kc.wait_for_ready(timeout=60)
        execute(kc, "import nbmodels")
        pings(kc, 20, args.gap)  # warm up
        idle = pings(kc, args.pings, args.gap)
        results["idle"] = stats(idle)
        for label, digest in (("download", None), ("download + sha256", sha)):
            samples, seconds, info = [], [], {}
            for i in range(args.downloads):
                target = work / f"{label.replace(' ', '')}-{i}"
                url = server.url(data.name)
                more, elapsed, info = during_download(kc, url, target, data.name, digest, args.gap)
                if Path(info["path"]).stat().st_size != size:
                    raise RuntimeError(f"{label}: wrong size")
                samples += more
                seconds.append(info.get("job_seconds") or elapsed)
                shutil.rmtree(target, ignore_errors=True)
                os.sync()
            results[label] = {
                **stats(samples),
                "seconds": seconds,
                "mb_per_s": size / 1e6 / statistics.median(seconds),
                "status": info.get("status"),
            }
        results["idle after"] = stats(pings(kc, args.pings, args.gap))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        bench.RES.cleanup()

    machine = bench.machine_info()
    results["machine"] = machine
    lines = [
        "| kernel state | pings | median ms | p95 ms | max ms | download MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("idle", "download", "download + sha256", "idle after"):
        r = results[key]
        speed = f"{r['mb_per_s']:.0f}" if "mb_per_s" in r else "—"
        lines.append(
            f"| {key} | {r['n']} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} "
            f"| {speed} |"
        )
    text = "\n".join(lines)
    notes = (
        f"`1+1` round trips (execute_request → execute_reply, {args.gap * 1000:.0f} ms apart) in "
        f"an ipykernel while nbmodels downloads {size / 2**20:.0f} MiB from nginx on 127.0.0.1 in "
        f"the same kernel. {machine['nproc']} CPUs, {machine['cpu']}, {machine['date']}; "
        f"nbmodels {machine['nbmodels']}."
    )
    print(text)
    print()
    print(notes)
    (bench.OUT / "responsiveness.json").write_text(json.dumps(results, indent=1))
    (bench.OUT / "responsiveness.md").write_text(text + "\n\n" + notes + "\n")
    bench.log(f"\nwrote {bench.OUT / 'responsiveness.json'}, {bench.OUT / 'responsiveness.md'}")


if __name__ == "__main__":
    main()
