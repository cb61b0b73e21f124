"""Which Jupyter server launched this process, and does its nbmodels service answer?

What jupyter_server and jupyter_client really do (read in their sources, jupyter_server 2.x,
jupyter_client 8.x):

- A running server writes ``jpserver-<pid>.json`` (mode 0600) into its runtime directory: its
  ``pid``, ``hostname`` (its ``ip``, or ``localhost``), ``port``, ``sock`` (a Unix socket, or
  ``""``), ``secure`` (TLS), ``base_url`` and ``token``. The runtime directory is
  ``$JUPYTER_RUNTIME_DIR``, else ``<jupyter data dir>/runtime`` (jupyter_core's
  ``jupyter_runtime_dir``; computed here without importing it).
- The server starts kernels through jupyter_client (its ``LocalProvisioner`` and
  ``launch_kernel``): on POSIX the kernel's environment gets ``JPY_PARENT_PID`` = the
  launching process (the server), which stays right through wrapper commands (``conda run``, a
  shell script) that change the direct parent; on Windows that variable holds a handle, not a
  pid, so the parent process is used. There is no nanny process in jupyter_client 8, and no
  variable with the server's URL. The kernel's connection file (``-f``) lies in the server's
  runtime directory (``connection_dir = runtime_dir``), which also covers a server whose
  ``runtime_dir`` was configured without the environment variable.

So: the launcher's pid (``JPY_PARENT_PID``, the parent, on POSIX without that variable also the
grandparent) names the file; the file, owned by this user, gives the URL and the token; one
``GET`` of the service's index (short timeout) confirms the extension answers. The token is
kept in :class:`ServerInfo` (never in its ``repr``) and sent in a header, never in a URL.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx2
import platformdirs

__all__ = ["Discovery", "ServerInfo", "find_server", "launcher_pids", "probe", "runtime_dirs"]

log = logging.getLogger("nbmodels")

#: Seconds the index request may take before the server counts as not answering.
PROBE_TIMEOUT = 2.0
_FALSE = ("no", "n", "false", "off", "0", "0.0")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """A Jupyter server with the nbmodels service: ``url`` is the service's mount point
    (``http://127.0.0.1:8888/nbmodels/``)."""

    url: str
    pid: int
    info_file: Path
    token: str = field(default="", repr=False)
    #: The server engine's Hugging Face cache (from its index; None: not said).
    hf_cache: str | None = None

    def shares_cache(self, cache: Path) -> bool:
        """Does the server's engine put Hub files in ``cache`` (this process's cache)?"""
        if self.hf_cache is None:
            return True  # an older service: assume the environment the kernel inherited
        return os.path.realpath(self.hf_cache) == os.path.realpath(cache)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


@dataclass(frozen=True, slots=True)
class Discovery:
    """What :func:`find_server` found: a server, or why there is none (one sentence)."""

    server: ServerInfo | None
    reason: str = ""


def runtime_dirs() -> list[Path]:
    """Where running servers leave their files: the directory of this kernel's connection file,
    then ``$JUPYTER_RUNTIME_DIR`` or jupyter_core's default (no duplicates)."""
    out: list[Path] = []
    connection = _connection_file()
    if connection is not None:
        out.append(connection.parent)
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    out.append(Path(env) if env else _jupyter_data_dir() / "runtime")
    return list(dict.fromkeys(out))


def _connection_file() -> Path | None:
    """The ``-f`` argument a kernel is started with (``python -m ipykernel_launcher -f F``)."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-f", "--f") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("-f=", "--f=")):
            value = arg.split("=", 1)[1]
        if value and value.endswith(".json"):
            return Path(value).expanduser()
    return None


def _jupyter_data_dir() -> Path:
    """jupyter_core's ``jupyter_data_dir()``, without importing it (or traitlets)."""
    env = os.environ
    if env.get("JUPYTER_DATA_DIR"):
        return Path(env["JUPYTER_DATA_DIR"])
    if env.get("JUPYTER_PLATFORM_DIRS", "").lower() not in ("", *_FALSE):
        return Path(platformdirs.user_data_dir("jupyter", appauthor=False))
    home = Path.home().resolve()
    if sys.platform == "darwin":
        return home / "Library" / "Jupyter"
    if sys.platform == "win32":
        appdata = env.get("APPDATA")
        if appdata:
            return Path(appdata, "jupyter").resolve()
        config = env.get("JUPYTER_CONFIG_DIR") or str(home / ".jupyter")
        return Path(config) / "data"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "jupyter"


def launcher_pids() -> list[int]:
    """The processes that may have launched this one as a kernel, most likely first."""
    out: list[int] = []
    raw = os.environ.get("JPY_PARENT_PID", "").strip()
    if raw.isdigit() and sys.platform != "win32":
        out.append(int(raw))
    parent = os.getppid()
    out.append(parent)
    if not out[:-1]:  # no JPY_PARENT_PID: a wrapper may sit between the launcher and us
        grand = _parent_of(parent)
        if grand is not None:
            out.append(grand)
    return [p for p in dict.fromkeys(out) if p > 1]


def _parent_of(pid: int) -> int | None:
    """The parent of ``pid`` where ``/proc`` tells (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # "pid (comm) state ppid ...": comm may contain spaces and parentheses
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def find_server(timeout: float = PROBE_TIMEOUT) -> Discovery:
    """The Jupyter server that launched this process, if its nbmodels service answers."""
    dirs = runtime_dirs()
    for pid in launcher_pids():
        for folder in dirs:
            info = _read_info(folder / f"jpserver-{pid}.json", pid)
            if isinstance(info, str):
                if info:
                    return Discovery(None, info)
                continue
            answer = probe(info, timeout)
            if isinstance(answer, ServerInfo):
                log.debug("nbmodels: using the download service of %s", info.url)
                return Discovery(answer)
            return Discovery(None, answer)
    where = ", ".join(str(d) for d in dirs)
    return Discovery(
        None, f"no Jupyter server launched this process (no jpserver-<pid>.json in {where})"
    )


def _read_info(path: Path, pid: int) -> ServerInfo | str:
    """The server of a ``jpserver-<pid>.json``; ``""`` when there is no such file, else one
    sentence on why it cannot be used."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"{path} cannot be read ({exc.strerror or exc})"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to another user"
    try:
        data = json.loads(text)
        if int(data["pid"]) != pid:
            return f"{path} names another process"
        if data.get("sock"):
            return f"the Jupyter server of {path} listens on a Unix socket"
        host = str(data.get("hostname") or "localhost")
        port = int(data["port"])
        base = "/" + str(data.get("base_url") or "/").strip("/") + "/"
        token = str(data.get("token") or "")
        scheme = "https" if data.get("secure") else "http"
    except (KeyError, TypeError, ValueError):
        return f"{path} is not a Jupyter server file"
    base = base.replace("//", "/")
    url = f"{scheme}://{_connect_host(host)}:{port}{base}nbmodels/"
    return ServerInfo(url, pid, path, token)


def _connect_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from the same machine."""
    if host in ("", "0.0.0.0", "*"):  # noqa: S104 - a listening address, mapped to loopback
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def probe(server: ServerInfo, timeout: float = PROBE_TIMEOUT) -> ServerInfo | str:
    """One ``GET`` of the service's index: ``server`` with what the index says of it when it
    answers as nbmodels, else why not (one sentence)."""
    try:
        with httpx2.Client(timeout=timeout, trust_env=False) as client:
            answer = client.get(server.url, headers=server.headers)
    except httpx2.HTTPError as exc:
        return f"the Jupyter server at {server.url} did not answer ({type(exc).__name__})"
    if answer.status_code == 404:
        return (
            f"the Jupyter server at {server.url} has no nbmodels extension "
            "(nbmodels is not installed in the server's environment)"
        )
    if answer.status_code in (401, 403):
        return f"the Jupyter server at {server.url} refused its own token"
    try:
        index = answer.json() if answer.status_code == 200 else None
    except ValueError:
        index = None
    if not isinstance(index, dict) or index.get("name") != "nbmodels":
        return f"{server.url} answered HTTP {answer.status_code}, not nbmodels"
    cache = index.get("hf_cache")
    return replace(server, hf_cache=cache if isinstance(cache, str) else None)
