"""Side by side on loopback: curl vs nbmodels (one connection), same file, same server, same run.

    .venv/bin/python benchmarks/loopback_vs_curl.py [size_mib] [runs]

Serves a random file from memory with the test suite's raw-socket server on 127.0.0.1, then
alternates curl and nbmodels downloads, printing MB/s medians and CPU seconds per GB. This is
the quick check of issue 2; the full benchmark (nginx, throttled CDN, aria2c, hf_transfer)
belongs to the throughput work.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faultserver import FaultServer  # noqa: E402


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    size = int(sys.argv[1]) * 1024 * 1024 if len(sys.argv) > 1 else 1024 * 1024 * 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    data = os.urandom(size)
    rows: dict[str, list[tuple[float, float]]] = {"curl": [], "nbmodels": [], "nbmodels+sha256": []}
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    with FaultServer() as srv, tempfile.TemporaryDirectory() as tmp:
        srv.add_file("big.bin", data)
        url = srv.url("big.bin")
        script = (
            "import sys, nbmodels; nbmodels.resolve(sys.argv[1], dir=sys.argv[2], "
            "**({'sha256': sys.argv[3]} if len(sys.argv) > 3 else {}))"
        )
        for _ in range(runs):
            for tool in rows:
                out = Path(tmp) / tool
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                env = {**os.environ, "NBMODELS_HOME": str(Path(tmp) / "home")}
                if tool == "curl":
                    cmd = ["curl", "-s", "-o", str(out / "big.bin"), url]
                else:
                    cmd = [sys.executable, "-c", script, url, str(out)]
                    if tool.endswith("sha256"):
                        cmd.append(digest)
                cpu0, t0 = cpu_children(), time.perf_counter()
                subprocess.run(cmd, check=True, env=env)
                elapsed, cpu = time.perf_counter() - t0, cpu_children() - cpu0
                assert (out / "big.bin").stat().st_size == size
                rows[tool].append((size / elapsed / 1e6, cpu / (size / 1e9)))
    print(f"{size / 2**20:.0f} MiB over loopback, {runs} runs each, medians")
    curl = statistics.median(r[0] for r in rows["curl"])
    for tool, values in rows.items():
        mbps = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{tool:18s} {mbps:8.0f} MB/s  {mbps / curl:5.2f}x curl  {cpu:5.2f} CPU-s/GB")


if __name__ == "__main__":
    main()
