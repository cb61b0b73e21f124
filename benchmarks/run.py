"""Side-by-side download benchmark: curl, aria2c, huggingface_hub, hf_transfer and nbmodels.

    sudo .venv/bin/python benchmarks/run.py            # everything, about 10-12 minutes
    .venv/bin/python benchmarks/run.py --runs 2 --scenarios throttled-256MiB
    .venv/bin/python benchmarks/run.py --help

One command that

1. installs what is missing: nginx, aria2, curl, nftables, iproute2 (apt); matplotlib (pip, into
   the venv running this script); a separate venv ``benchmarks/.venv-hf036`` with
   ``huggingface_hub==0.36.*`` and ``hf_transfer``;
2. generates a 256 MiB and a 2 GiB random file (cached in ``benchmarks/out/data``);
3. serves them with nginx: unthrottled on 127.0.0.1, and throttled to 20 MB/s *per TCP
   connection* inside a network namespace (veth + HTB + nftables, one HTB class per
   connection; see README.md "Throttling model") -- falling back to nginx ``limit_rate`` when
   network namespaces are not available;
4. alternates the tools run by run (A B C ... A B C ...), each download into a fresh directory
   with a fresh ``NBMODELS_HOME`` / ``HF_HOME``, measuring wall time, CPU seconds and peak RSS of
   the tool's process tree (``os.wait4``) and, for the Python tools, the time and CPU of the
   download call itself (the import of the library excluded); every output file's size and
   sha256 are checked afterwards, outside the timing;
5. prints a table of medians, writes ``benchmarks/out/results.json`` / ``results.md`` and the
   chart ``benchmarks/results.png``.

Only 127.0.0.1 and the veth addresses created here (10.200.0.0/24 by default) are contacted.
Everything created (network namespace, veth, nginx processes) is removed at exit, by the names
and PIDs recorded in ``benchmarks/out/.resources.json`` (also after a killed run, at the next
start).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
DATA = OUT / "data"
RESOURCES = OUT / ".resources.json"
HF036 = HERE / ".venv-hf036"
CHART = HERE / "results.png"
README = HERE / "README.md"

MIB = 1 << 20
FILES = {"256MiB": 256 * MIB, "2GiB": 2048 * MIB}
SCENARIOS = {
    "throttled-256MiB": ("throttled", "256MiB"),
    "throttled-2GiB": ("throttled", "2GiB"),
    "unthrottled-2GiB": ("unthrottled", "2GiB"),
    "unthrottled-256MiB": ("unthrottled", "256MiB"),
}
DEFAULT_SCENARIOS = ["throttled-256MiB", "throttled-2GiB", "unthrottled-2GiB"]
RATE = 20_000_000  # bytes per second per connection (20 MB/s = 160 Mbit/s)


@dataclass(frozen=True)
class Tool:
    key: str
    label: str
    single_stream: bool  # one connection: pinned at the cap when throttled (see --capped-runs)
    python: str | None  # "main" or "hf036" for the Python tools, None for native programs


TOOLS = [
    Tool("curl", "curl", True, None),
    Tool("aria2c", "aria2c -x16 -s16 -k1M", False, None),
    Tool("hf_hub", "hf_hub_download (http_get)", True, "main"),
    Tool("hf_transfer", "hf_transfer (hub 0.36)", False, "hf036"),
    Tool("nbmodels_sha256", "nbmodels + sha256", False, "main"),
    Tool("nbmodels", "nbmodels (no verify)", False, "main"),
]
TOOL_BY_KEY = {t.key: t for t in TOOLS}

# The Python tools run this in a child process. The library is imported first; the download
# call alone is timed (wall and CPU of all threads and subprocesses) and written to a report.
CHILD = r"""
import json, os, resource, sys, time

spec = json.loads(sys.argv[1])
url, dest = spec["url"], os.path.join(spec["dir"], spec["name"])
extra = {}


def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


if spec["kind"] in ("hf_hub", "hf_transfer"):
    # Exactly what hf_hub_download streams with, minus the Hub metadata request.
    import huggingface_hub
    from huggingface_hub.file_download import http_get

    extra["huggingface_hub"] = huggingface_hub.__version__
    if spec["kind"] == "hf_transfer":
        # huggingface_hub 0.36 with HF_HUB_ENABLE_HF_TRANSFER=1: http_get opens the GET, then
        # hands the URL to hf_transfer.download(max_files=HF_TRANSFER_CONCURRENCY (100),
        # chunk_size=DOWNLOAD_CHUNK_SIZE (10 MiB), parallel_failures=3, max_retries=5). Record
        # the call to prove hf_transfer did the transfer.
        import functools
        import hf_transfer
        from huggingface_hub import constants

        assert constants.HF_HUB_ENABLE_HF_TRANSFER, "HF_HUB_ENABLE_HF_TRANSFER is not set"
        calls = extra["hf_transfer_calls"] = []
        original = hf_transfer.download

        @functools.wraps(original)
        def download(*args, **kwargs):
            calls.append({k: v for k, v in kwargs.items() if k not in ("callback", "headers")})
            return original(*args, **kwargs)

        hf_transfer.download = download

    def run():
        with open(dest, "wb") as f:
            http_get(url, f)
        return dest

else:
    import nbmodels

    opts = {"dir": spec["dir"]}
    if spec.get("sha256"):
        opts["sha256"] = spec["sha256"]
    if spec.get("connections"):
        opts["connections"] = spec["connections"]

    def run():
        return str(nbmodels.resolve(url, **opts))


c0, t0 = cpu(), time.perf_counter()
path = run()
t1, c1 = time.perf_counter(), cpu()
if spec["kind"] == "hf_transfer" and not extra["hf_transfer_calls"]:
    sys.exit("hf_transfer was not used")
with open(spec["report"], "w") as f:
    json.dump({"call_s": t1 - t0, "call_cpu_s": c1 - c0, "path": path, **extra}, f)
"""


def log(msg: str) -> None:
    print(msg, flush=True)


def sh(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


# --------------------------------------------------------------------------- dependencies

APT = {
    "nginx": "nginx",
    "aria2c": "aria2",
    "curl": "curl",
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "/usr/bin/time": "time",
}


def main_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def ensure_deps(skip_install: bool) -> None:
    missing = sorted({pkg for exe, pkg in APT.items() if shutil.which(exe) is None})
    if missing:
        if skip_install or os.geteuid() != 0:
            sys.exit(f"missing programs; install them with: apt-get install -y {' '.join(missing)}")
        log(f"installing (apt): {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    probe = "import huggingface_hub as h, hf_transfer; assert h.__version__.startswith('0.36.')"
    hf_py = HF036 / "bin" / "python"
    if not hf_py.exists() or subprocess.run([hf_py, "-c", probe], capture_output=True).returncode:
        if skip_install:
            sys.exit(f"{HF036} is missing or incomplete (run without --no-install)")
        log(f"creating {HF036.relative_to(REPO)} (huggingface_hub==0.36.*, hf_transfer)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", HF036], check=True)
        subprocess.run(
            [hf_py, "-m", "pip", "install", "-q", "huggingface_hub==0.36.*", "hf_transfer"],
            check=True,
        )
        subprocess.run([hf_py, "-c", probe], check=True)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if skip_install:
            log("matplotlib is missing: no chart")
            return
        log(f"installing matplotlib into {sys.prefix}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)


# --------------------------------------------------------------------------- test files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def ensure_file(name: str, size: int) -> tuple[Path, str]:
    """A random file of ``size`` bytes, cached with its sha256 in a sidecar JSON."""
    DATA.mkdir(parents=True, exist_ok=True)
    path, meta = DATA / f"{name}.bin", DATA / f"{name}.bin.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        info = json.loads(meta.read_text())
        st = path.stat()
        if st.st_size == size == info["size"] and st.st_mtime_ns == info["mtime_ns"]:
            return path, info["sha256"]
    log(f"generating {path.relative_to(REPO)} ({size / MIB:.0f} MiB of random bytes)")
    h = hashlib.sha256()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for _ in range(size // (16 * MIB)):
            block = os.urandom(16 * MIB)
            h.update(block)
            f.write(block)
    tmp.replace(path)
    digest = h.hexdigest()
    meta.write_text(
        json.dumps({"size": size, "sha256": digest, "mtime_ns": path.stat().st_mtime_ns})
    )
    return path, digest


def warm(path: Path) -> None:
    """Read the file once so that nginx serves it from the page cache from the first run."""
    with path.open("rb") as f:
        while f.read(16 * MIB):
            pass


# --------------------------------------------------------------------------- cleanup state


class Resources:
    """Every namespace, link and process created, recorded on disk so that a later start can
    remove what a killed run left behind (only these names and PIDs, nothing else)."""

    def __init__(self) -> None:
        self.state: dict[str, list[Any]] = {"netns": [], "links": [], "pids": [], "groups": []}

    def _save(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        RESOURCES.write_text(json.dumps(self.state))

    def add(self, kind: str, value: Any) -> None:
        self.state[kind].append(value)
        self._save()

    def remove(self, kind: str, value: Any) -> None:
        with contextlib.suppress(ValueError):
            self.state[kind].remove(value)
        self._save()

    @staticmethod
    def kill_group(pgid: int, marker: str) -> None:
        """SIGKILL the process group of a tool run, if its leader is still ours."""
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pgid}/cmdline").read_bytes():
                os.killpg(pgid, signal.SIGKILL)

    @staticmethod
    def kill_pid(pid: int, marker: str) -> None:
        """SIGTERM, then SIGKILL, ``pid`` -- only if its command line still contains ``marker``
        (so a recycled PID is never touched)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                return
            if marker.encode() not in cmdline:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    return
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)

    def cleanup(self) -> None:
        for pgid, marker in list(self.state.get("groups", [])):
            self.kill_group(pgid, marker)
            self.remove("groups", [pgid, marker])
        for pid, marker in list(self.state["pids"]):
            self.kill_pid(pid, marker)
            self.remove("pids", [pid, marker])
        for ns in list(self.state["netns"]):
            if ns in sh("ip", "netns", "list", check=False).stdout.split():
                for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                sh("ip", "netns", "del", ns, check=False)
            self.remove("netns", ns)
        for link in list(self.state["links"]):
            if sh("ip", "link", "show", link, check=False).returncode == 0:
                sh("ip", "link", "del", link, check=False)
            self.remove("links", link)

    @classmethod
    def leftovers(cls) -> None:
        with contextlib.suppress(OSError, ValueError):
            stale = cls()
            stale.state = {**stale.state, **json.loads(RESOURCES.read_text())}
            if any(stale.state.values()):
                log(f"removing leftovers of an earlier run: {stale.state}")
                stale.cleanup()


RES = Resources()


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """One nginx (master + workers) serving DATA, optionally inside a network namespace."""

    LOG_FORMAT = (
        "$msec $connection $connection_requests $status $body_bytes_sent $request_time "
        '"$http_range" "$http_user_agent"'
    )

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        netns: str | None = None,
        limit_rate: int | None = None,
    ) -> None:
        self.name, self.host, self.port, self.netns = name, host, port, netns
        self.prefix = OUT / "nginx" / name
        self.limit_rate = limit_rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.access_log = self.prefix / "access.log"

    def url(self, filename: str) -> str:
        return f"http://{self.host}:{self.port}/{filename}"

    def start(self) -> None:
        shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix.mkdir(parents=True)
        limit = f"limit_rate {self.limit_rate}; limit_rate_after 0;" if self.limit_rate else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(f"""# generated by benchmarks/run.py
user root;
worker_processes auto;
daemon off;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    log_format bench '{self.LOG_FORMAT}';
    access_log {self.access_log} bench;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {{
        listen {self.host}:{self.port};
        root {DATA};
        location / {{ {limit} }}
    }}
}}
""")
        cmd = [
            "nginx",
            "-c",
            str(conf),
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
        ]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]  # ip execs nginx: same PID
        self.proc = subprocess.Popen(
            cmd,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=(self.prefix / "stderr.txt").open("wb"),
        )
        RES.add("pids", [self.proc.pid, str(conf)])
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                err = (self.prefix / "stderr.txt").read_text() + (
                    self.prefix / "error.log"
                ).read_text()
                raise RuntimeError(f"nginx {self.name} exited: {err}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx {self.name} does not listen on {self.host}:{self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            marker = str(self.prefix / "nginx.conf")
            RES.kill_pid(self.proc.pid, marker)
            with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
                self.proc.wait(5)
            RES.remove("pids", [self.proc.pid, marker])
            self.proc = None

    def pids(self) -> list[int]:
        """Master and workers."""
        assert self.proc is not None
        out = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    out.append(int(stat.parent.name))
        return out

    def cpu(self) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def log_offset(self) -> int:
        try:
            return self.access_log.stat().st_size
        except OSError:
            return 0

    def requests_since(self, offset: int) -> list[dict[str, Any]]:
        rows = []
        with self.access_log.open("rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                m = re.match(r'(\S+) (\d+) (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)"', line)
                if m:
                    end, duration = float(m[1]), float(m[6])
                    rows.append(
                        {
                            "conn": int(m[2]),
                            "status": int(m[4]),
                            "bytes": int(m[5]),
                            "start": end - duration,
                            "end": end,
                            "range": m[7],
                        }
                    )
        return rows


class Shaper:
    """A network namespace joined to this one by a veth pair; its egress (server to client)
    is shaped per TCP connection: HTB with one class per connection slot at RATE each, and
    nftables giving every new connection the next slot (``numgen inc``) as its conntrack mark,
    then each packet its class from that mark (``meta priority``). Per TCP flow, no burst per
    request, like ``fq maxrate`` (which this kernel lacks)."""

    def __init__(self, rate: int, slots: int) -> None:
        tag = f"nbb{os.getpid()}"
        self.netns, self.host_if, self.ns_if = tag, f"{tag}h", f"{tag}n"
        self.rate, self.slots = rate, slots
        self.host_ip = self.ns_ip = ""

    def _subnet(self) -> str:
        used = (
            sh("ip", "-o", "addr", "show", check=False).stdout
            + sh("ip", "route", check=False).stdout
        )
        for third in range(200, 250):
            if f"10.{third}." not in used:
                return f"10.{third}.0"
        raise RuntimeError("no free 10.x.0.0/24 subnet for the veth pair")

    def setup(self) -> None:
        def ns(*cmd: str) -> None:
            sh("ip", "netns", "exec", self.netns, *cmd)

        net = self._subnet()
        self.host_ip, self.ns_ip = f"{net}.1", f"{net}.2"
        sh("ip", "netns", "add", self.netns)
        RES.add("netns", self.netns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        RES.add("links", self.host_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.netns)
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        ns("ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
        ns("ip", "link", "set", self.ns_if, "up")
        ns("ip", "link", "set", "lo", "up")
        ns("tc", "qdisc", "add", "dev", self.ns_if, "root", "handle", "1:", "htb")
        rate = f"{self.rate * 8}bit"
        batch = OUT / "nginx" / "tc.batch"
        batch.parent.mkdir(parents=True, exist_ok=True)
        batch.write_text(
            "".join(
                f"class add dev {self.ns_if} parent 1: classid 1:{i:x} htb rate {rate} ceil {rate} "
                "burst 256k cburst 256k quantum 65536\n"
                for i in range(1, self.slots + 1)
            )
        )
        ns("tc", "-batch", str(batch))
        elements = ", ".join(f"{i} : 1:{i:x}" for i in range(1, self.slots + 1))
        rules = OUT / "nginx" / "shape.nft"
        rules.write_text(f"""table inet nbbench {{
    map slot {{ type mark : classid; elements = {{ {elements} }} }}
    chain pre {{
        type filter hook prerouting priority 0;
        ct state new ct mark set numgen inc mod {self.slots} offset 1
    }}
    chain post {{
        type filter hook postrouting priority 0;
        meta priority set ct mark map @slot
    }}
}}
""")
        ns("nft", "-f", str(rules))

    def stats(self) -> dict[str, int]:
        """Bytes per HTB class with traffic (evidence that each connection had its own slot)."""
        out = sh(
            "ip",
            "netns",
            "exec",
            self.netns,
            "tc",
            "-s",
            "class",
            "show",
            "dev",
            self.ns_if,
            check=False,
        ).stdout
        return {
            m[1]: int(m[2]) for m in re.finditer(r"class htb (\S+) .*?\n Sent (\d+) bytes", out)
        }

    def teardown(self) -> None:
        if sh("ip", "link", "show", self.host_if, check=False).returncode == 0:
            sh("ip", "link", "del", self.host_if, check=False)
        RES.remove("links", self.host_if)
        sh("ip", "netns", "del", self.netns, check=False)
        RES.remove("netns", self.netns)


# --------------------------------------------------------------------------- one run


def child_env(home: Path, tool: Tool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        no_proxy="*",
        NO_PROXY="*",
        NBMODELS_HOME=str(home / "nbmodels"),
        HF_HOME=str(home / "hf"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    if tool.key == "hf_transfer":
        env["HF_HUB_ENABLE_HF_TRANSFER"] = "1"
    return env


def command(
    tool: Tool, url: str, dest: Path, name: str, sha: str, report: Path, connections: int | None
) -> list[str]:
    if tool.key == "curl":
        return ["curl", "-q", "-sS", "--fail", "-o", str(dest / name), url]
    if tool.key == "aria2c":
        return [
            "aria2c",
            "--no-conf",
            "-q",
            "-x16",
            "-s16",
            "-k1M",
            "-d",
            str(dest),
            "-o",
            name,
            url,
        ]
    spec = {
        "kind": tool.key.removesuffix("_sha256"),
        "url": url,
        "dir": str(dest),
        "name": name,
        "report": str(report),
        "connections": connections,
        "sha256": sha if tool.key == "nbmodels_sha256" else None,
    }
    py = HF036 / "bin" / "python" if tool.python == "hf036" else main_python()
    return [str(py), "-c", CHILD, json.dumps(spec)]


def peak_rss_kib(path: Path) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return float(path.read_text().split()[-1])
    return float("nan")


def run_once(
    tool: Tool,
    scenario: str,
    rnd: int,
    server: Nginx,
    data: Path,
    sha: str,
    args: argparse.Namespace,
    shaper: Shaper | None,
) -> dict[str, Any]:
    size = data.stat().st_size
    run_dir = OUT / "runs" / scenario / f"{tool.key}-{rnd}"
    shutil.rmtree(run_dir, ignore_errors=True)
    dest, home = run_dir / "dl", run_dir / "home"
    dest.mkdir(parents=True)
    home.mkdir()
    report = run_dir / "report.json"
    cmd = command(tool, server.url(data.name), dest, data.name, sha, report, args.connections)
    timeout = args.timeout or max(90.0, size / 4e6)
    rec: dict[str, Any] = {"scenario": scenario, "tool": tool.key, "round": rnd, "size": size}
    offset, srv_cpu0 = server.log_offset(), server.cpu()
    classes0 = shaper.stats() if shaper else {}
    # Peak RSS comes from GNU time: a child forked by this (large) Python process inherits its
    # RSS high-water mark through exec, so ru_maxrss of our own wait4 would be at least ours.
    rss_file = run_dir / "time.txt"
    with (run_dir / "stdout.txt").open("wb") as out, (run_dir / "stderr.txt").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd],
            stdout=out,
            stderr=err,
            env=child_env(home, tool),
            cwd=run_dir,
            start_new_session=True,
        )
        RES.add("groups", [proc.pid, str(rss_file)])
        timer = threading.Timer(timeout, functools.partial(os.killpg, proc.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the tool's own process group
    RES.remove("groups", [proc.pid, str(rss_file)])
    time.sleep(0.3)  # let nginx log the requests of connections the tool just closed
    cpu = usage.ru_utime + usage.ru_stime
    rec.update(
        wall_s=wall,
        cpu_s=cpu,
        rss_mb=peak_rss_kib(rss_file) / 1024,
        exit=proc.returncode,
        server_cpu_s=server.cpu() - srv_cpu0,
    )
    reqs = server.requests_since(offset)
    rec.update(
        requests=len(reqs),
        connections=len({r["conn"] for r in reqs}),
        server_bytes=sum(r["bytes"] for r in reqs),
        statuses=sorted({r["status"] for r in reqs}),
        # When each request started and ended (s, relative to the first start), with its range
        # and bytes sent: the request pattern, e.g. how fast a tool ramps up its connections.
        request_log=[
            [round(r["start"] - t_first, 3), round(r["end"] - t_first, 3), r["range"], r["bytes"]]
            for r in sorted(reqs, key=lambda r: r["start"])
            for t_first in [min(x["start"] for x in reqs)]
        ],
    )
    if shaper:
        # Bytes that really left the server (HTB counters: payload + TCP/IP/Ethernet headers),
        # unlike $body_bytes_sent, which also counts what sat in socket buffers when a client
        # closed a connection. One slot per connection is the point of the shaper: check it.
        deltas = [v - classes0.get(k, 0) for k, v in shaper.stats().items()]
        rec["wire_bytes"] = sum(deltas)
        rec["shaper_slots_used"] = sum(1 for d in deltas if d)
        if rec["shaper_slots_used"] < rec["connections"]:
            rec["shaper_warning"] = "connections shared an HTB slot (raise --slots)"
    rec["call_s"], rec["call_cpu_s"] = wall, cpu  # native tools: the process is the call
    path = dest / data.name
    error = None
    if proc.returncode != 0:
        error = f"exit {proc.returncode}" + (" (timeout)" if wall >= timeout else "")
    elif tool.python:
        try:
            info = json.loads(report.read_text())
            rec.update(call_s=info["call_s"], call_cpu_s=info["call_cpu_s"])
            rec.update({k: v for k, v in info.items() if k not in ("call_s", "call_cpu_s", "path")})
            path = Path(info["path"])
        except (OSError, ValueError, KeyError) as e:
            error = f"no report: {e}"
    if error is None:
        if not path.is_file():
            error = f"no output file {path}"
        elif path.stat().st_size != size:
            error = f"size {path.stat().st_size} != {size}"
        elif not args.no_sha_check and sha256_file(path) != sha:
            error = "sha256 mismatch"
    rec["extra_files"] = sorted(
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p != path
    )
    rec["ok"] = error is None
    if error:
        rec["error"] = error
        rec["stderr_tail"] = (run_dir / "stderr.txt").read_text(errors="replace")[-1500:]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    os.sync()
    return rec


# --------------------------------------------------------------------------- summary


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        summary.setdefault(rec["scenario"], {}).setdefault(rec["tool"], {"recs": []})[
            "recs"
        ].append(rec)
    for tools in summary.values():
        for row in tools.values():
            recs = row.pop("recs")
            ok = [r for r in recs if r["ok"]]
            gb = recs[0]["size"] / 1e9
            row.update(
                runs=len(recs),
                ok=len(ok),
                mbps=med([r["size"] / 1e6 / r["call_s"] for r in ok]),
                proc_mbps=med([r["size"] / 1e6 / r["wall_s"] for r in ok]),
                cpu_per_gb=med([r["call_cpu_s"] / gb for r in ok]),
                proc_cpu_per_gb=med([r["cpu_s"] / gb for r in ok]),
                rss_mb=med([r["rss_mb"] for r in ok]),
                connections=med([r["connections"] for r in ok]),
                requests=med([r["requests"] for r in ok]),
                server_bytes_ratio=med([r["server_bytes"] / r["size"] for r in ok]),
                wire_ratio=med([r["wire_bytes"] / r["size"] for r in ok if "wire_bytes" in r]),
                server_cpu_per_gb=med([r["server_cpu_s"] / gb for r in ok]),
                all_mbps=[round(r["size"] / 1e6 / r["call_s"], 1) for r in ok],
                errors=[r["error"] for r in recs if not r["ok"]],
            )
        base = {k: tools.get(k, {}).get("mbps") for k in ("curl", "aria2c", "hf_transfer")}
        best = max((v for k, v in base.items() if k != "curl" and v), default=None)
        for row in tools.values():
            m = row["mbps"]
            row["x_curl"] = m / base["curl"] if m and base["curl"] else None
            row["x_aria2c"] = m / base["aria2c"] if m and base["aria2c"] else None
            row["x_best"] = m / best if m and best else None
    return summary


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        "| scenario | tool | ok | MB/s | × curl | × aria2c | × best(aria2c, hf_transfer) "
        "| CPU-s/GB | peak RSS MB | MB/s incl. start-up | CPU-s/GB incl. start-up "
        "| connections | requests | wire bytes / size |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for scenario, tools in summary.items():
        for key in [t.key for t in TOOLS if t.key in tools]:
            r = tools[key]
            lines.append(
                f"| {scenario} | {TOOL_BY_KEY[key].label} | {r['ok']}/{r['runs']} "
                f"| {fmt(r['mbps'], '.1f')} | {fmt(r['x_curl'], '.2f')} "
                f"| {fmt(r['x_aria2c'], '.2f')} "
                f"| {fmt(r['x_best'], '.2f')} | {fmt(r['cpu_per_gb'], '.2f')} "
                f"| {fmt(r['rss_mb'], '.0f')} | {fmt(r['proc_mbps'], '.1f')} "
                f"| {fmt(r['proc_cpu_per_gb'], '.2f')} | {fmt(r['connections'], '.0f')} "
                f"| {fmt(r['requests'], '.0f')} | {fmt(r['wire_ratio'], '.3f')} |"
            )
    return "\n".join(lines)


def chart(summary: dict[str, dict[str, dict[str, Any]]], machine: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = len(summary)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    for ax, (scenario, tools) in zip(axes[0], summary.items(), strict=True):
        keys = [t.key for t in TOOLS if t.key in tools]
        labels = [TOOL_BY_KEY[k].label for k in keys]
        vals = [tools[k]["mbps"] or 0 for k in keys]
        colors = ["#1f77b4" if k.startswith("nbmodels") else "#9e9e9e" for k in keys]
        y = range(len(keys))
        ax.barh(list(y), vals, color=colors)
        for i, k in enumerate(keys):
            ax.scatter(
                tools[k]["all_mbps"], [i] * len(tools[k]["all_mbps"]), s=9, color="black", zorder=3
            )
            right = max([vals[i], *tools[k]["all_mbps"]])
            ax.text(right * 1.02, i, f" {vals[i]:.0f}", va="center", fontsize=8)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(scenario, fontsize=10)
        ax.set_xlabel("MB/s (median; dots: runs)", fontsize=8)
        ax.set_xlim(0, max([1, *(v for k in keys for v in [*tools[k]["all_mbps"], 0])]) * 1.25)
    fig.suptitle(
        f"Downloads from nginx, {machine['nproc']} cores, {machine['date'][:10]}: "
        "throttled = 20 MB/s per TCP connection",
        fontsize=10,
    )
    fig.tight_layout()
    out = OUT / "results.png"
    fig.savefig(out, dpi=110)
    shutil.copyfile(out, CHART)
    return CHART


def sources_hash() -> str:
    """Of nbmodels' sources: the transfer layer is being rewritten, so say which state ran."""
    tree = hashlib.sha256()
    for f in sorted((REPO / "src" / "nbmodels").rglob("*.py")):
        tree.update(f.read_bytes())
    return tree.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    def first_line(*cmd: str) -> str:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            r = sh(*cmd, check=False)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        return "?"

    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    hf_main = sh(
        str(main_python()), "-c", "import huggingface_hub as h; print(h.__version__)", check=False
    ).stdout.strip()
    hf036 = sh(
        str(HF036 / "bin" / "python"),
        "-c",
        "import huggingface_hub as h, importlib.metadata as m; "
        "print(h.__version__, m.version('hf_transfer'))",
        check=False,
    ).stdout.split()
    nbm = sh(
        str(main_python()), "-c", "import nbmodels; print(nbmodels.__version__)", check=False
    ).stdout.strip()
    head = sh("git", "-C", str(REPO), "rev-parse", "--short", "HEAD", check=False).stdout.strip()
    dirty = sh("git", "-C", str(REPO), "status", "--porcelain", "--", "src", check=False).stdout
    tree = sources_hash()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "mem_gib": round(int(mem[1]) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "cpu": cpu[1].strip() if cpu else "?",
        "python": platform.python_version(),
        "curl": first_line("curl", "--version"),
        "aria2c": first_line("aria2c", "--version"),
        "nginx": first_line("nginx", "-v"),
        "huggingface_hub_main": hf_main,
        "huggingface_hub_hf036": hf036[0] if hf036 else "?",
        "hf_transfer": hf036[1] if len(hf036) > 1 else "?",
        "nbmodels": f"{nbm} (git {head}{', src/ modified' if dirty else ''}; "
        f"sources sha256 {tree})",
    }


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per tool and scenario (default 3)")
    p.add_argument(
        "--capped-runs",
        type=int,
        default=1,
        help="runs of the single-connection tools (curl, hf_hub_download) in throttled "
        "scenarios, where they sit at the 20 MB/s cap (default 1)",
    )
    p.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=DEFAULT_SCENARIOS)
    p.add_argument(
        "--tools", nargs="+", choices=[t.key for t in TOOLS], default=[t.key for t in TOOLS]
    )
    p.add_argument(
        "--throttle",
        choices=["auto", "netns", "nginx"],
        default="auto",
        help="netns: per-TCP-connection shaping (veth + HTB + nftables); nginx: "
        "limit_rate per request; auto: netns if possible (default)",
    )
    p.add_argument("--slots", type=int, default=1024, help="HTB classes (connection slots)")
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help="connections= for nbmodels (default: its automatic choice)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per download")
    p.add_argument("--no-install", action="store_true", help="fail instead of installing")
    p.add_argument("--no-sha-check", action="store_true", help="check sizes only")
    p.add_argument(
        "--replot", action="store_true", help="only redraw the chart from out/results.json"
    )
    p.add_argument(
        "--readme", action="store_true", help="replace the results block of benchmarks/README.md"
    )
    return p.parse_args()


def start_throttled(args: argparse.Namespace) -> tuple[Nginx, Shaper | None, str]:
    reason = ""
    if args.throttle in ("auto", "netns"):
        if os.geteuid() != 0:
            reason = "not root"
        else:
            shaper = Shaper(RATE, args.slots)
            try:
                shaper.setup()
                server = Nginx("throttled", shaper.ns_ip, 80, netns=shaper.netns)
                server.start()
                return server, shaper, "netns"
            except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
                detail = getattr(e, "stderr", "") or str(e)
                reason = f"{' '.join(getattr(e, 'cmd', []) or [])}: {detail}".strip()
                shaper.teardown()
        if args.throttle == "netns":
            sys.exit(f"per-connection shaping is not possible here: {reason}")
        log(f"network namespace shaping unavailable ({reason}); falling back to nginx limit_rate")
    server = Nginx("throttled", "127.0.0.1", free_port(), limit_rate=RATE)
    server.start()
    return server, None, f"nginx limit_rate ({reason or 'chosen'})"


def main() -> None:
    args = parse_args()
    if args.replot:
        saved = json.loads((OUT / "results.json").read_text())
        log(f"wrote {chart(saved['summary'], saved['machine'])}")
        return
    ensure_deps(args.no_install)
    OUT.mkdir(parents=True, exist_ok=True)
    Resources.leftovers()
    atexit.register(RES.cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    tools = [t for t in TOOLS if t.key in args.tools]
    scenarios = [s for s in SCENARIOS if s in args.scenarios]
    files = {
        name: ensure_file(f"f{name}", FILES[name])
        for name in sorted({SCENARIOS[s][1] for s in scenarios})
    }
    machine = machine_info()
    log(f"machine: {machine}")
    servers: dict[str, Nginx] = {}
    shaper = None
    throttle_model = None
    try:
        if any(SCENARIOS[s][0] == "unthrottled" for s in scenarios):
            servers["unthrottled"] = Nginx("unthrottled", "127.0.0.1", free_port())
            servers["unthrottled"].start()
        if any(SCENARIOS[s][0] == "throttled" for s in scenarios):
            servers["throttled"], shaper, throttle_model = start_throttled(args)
            log(f"throttled server: {servers['throttled'].url('')} ({throttle_model})")
        records: list[dict[str, Any]] = []
        plan = []
        for scenario in scenarios:
            for rnd in range(1, args.runs + 1):
                for tool in tools:
                    capped = SCENARIOS[scenario][0] == "throttled" and tool.single_stream
                    if not capped or rnd <= args.capped_runs:
                        plan.append((scenario, rnd, tool))
        current = None
        for i, (scenario, rnd, tool) in enumerate(plan, 1):
            kind, fname = SCENARIOS[scenario]
            data, sha = files[fname]
            if current != scenario:
                warm(data)
                current = scenario
            rec = run_once(
                tool,
                scenario,
                rnd,
                servers[kind],
                data,
                sha,
                args,
                shaper if kind == "throttled" else None,
            )
            records.append(rec)
            status = "ok" if rec["ok"] else f"FAILED: {rec['error']}"
            log(
                f"[{i}/{len(plan)}] {scenario:18s} {tool.key:16s} run {rnd}: "
                f"{rec['size'] / 1e6 / rec['call_s']:8.1f} MB/s  (call {rec['call_s']:.2f} s, "
                f"process {rec['wall_s']:.2f} s, CPU {rec['cpu_s']:.2f} s, "
                f"RSS {rec['rss_mb']:.0f} MB, "
                f"{rec['connections']} conns, {rec['requests']} reqs)  {status}"
            )
    finally:
        for server in servers.values():
            server.stop()
        if shaper:
            shaper.teardown()
        RES.cleanup()
    if sources_hash() not in machine["nbmodels"]:
        machine["nbmodels"] += f"; CHANGED during the run, now {sources_hash()}"
    summary = summarize(records)
    text = table(summary)
    notes = (
        f"Medians of {args.runs} runs (single-connection tools in throttled scenarios: "
        f"{min(args.capped_runs, args.runs)}). Throttle: {throttle_model or 'n/a'}. "
        f"{machine['nproc']} CPUs, {machine['mem_gib']} GiB, {machine['cpu']}, "
        f"kernel {machine['kernel']}, {machine['date']}. nbmodels {machine['nbmodels']}."
    )
    print()
    print(text)
    print()
    print(notes)
    result = {
        "machine": machine,
        "throttle": throttle_model,
        "rate_per_connection": RATE,
        "args": vars(args),
        "summary": summary,
        "runs": records,
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=1))
    (OUT / "results.md").write_text(text + "\n\n" + notes + "\n")
    png = chart(summary, machine)
    log(f"\nwrote {OUT / 'results.json'}, {OUT / 'results.md'}" + (f", {png}" if png else ""))
    if args.readme and README.exists():
        body = README.read_text()
        block = f"<!-- results:start -->\n{text}\n\n{notes}\n<!-- results:end -->"
        body, n = re.subn(
            r"<!-- results:start -->.*?<!-- results:end -->", lambda _: block, body, flags=re.S
        )
        if n:
            README.write_text(body)
            log(f"updated {README}")


if __name__ == "__main__":
    main()
