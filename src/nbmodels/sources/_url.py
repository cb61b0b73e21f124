"""Plain ``http(s)://`` URLs: one file into ``dir`` (default ``$NBMODELS_HOME/downloads/<host>``).

A small completion record (``<dir>/.nbmodels/<name>.json``) remembers which URL a finished file
came from, its size, validator and digest, so asking again costs no network at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .._config import nbmodels_home
from .._options import Options
from .._paths import UnsafePathError, contained, hidden_sibling, safe_filename, write_atomic
from .._redact import redact_url
from ..errors import OfflineError, Option, RefError
from ..net import split_userinfo
from ..transfer import FileSpec, TransferResult
from ._base import Plan, PlannedFile

__all__ = ["plan_url", "url_filename"]

RECORD_DIR = ".nbmodels"


def url_filename(url: str) -> str:
    """The file name a URL names (last path segment, percent-decoded, validated)."""
    parts = urlsplit(url)
    segment = unquote(parts.path.rsplit("/", 1)[-1])
    try:
        name = safe_filename(segment)
        if name == RECORD_DIR or ".nbmodels." in name:
            raise UnsafePathError(f"{name[:80]!r} is a name nbmodels uses for its own files")
        return name
    except UnsafePathError as exc:
        raise RefError(
            f"Cannot tell a file name from {redact_url(url)} ({exc}).",
            hint="Use a URL that ends in the file name.",
        ) from None


def default_dir(url: str) -> Path:
    parts = urlsplit(url)
    host = (parts.hostname or "unknown").lower()
    if parts.port:
        host = f"{host}_{parts.port}"
    return nbmodels_home() / "downloads" / safe_filename(host)


def _record_path(target: Path) -> Path:
    return target.parent / RECORD_DIR / hidden_sibling(target.name, ".json")[1:]


def read_record(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_record(target: Path, key: str, result: TransferResult) -> None:
    path = _record_path(target)
    path.parent.mkdir(exist_ok=True)
    st = target.stat()
    data = {
        "key": key,
        "size": result.size,
        "validator": result.validator,
        "sha256": result.sha256,
        "mtime_ns": st.st_mtime_ns,
        "completed_at": time.time(),
    }
    write_atomic(path, json.dumps(data).encode())


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _present(target: Path, key: str, expected_sha256: str | None) -> bool:
    """Is ``target`` the finished download of ``key`` (and of the given digest)? No network."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        return False
    if not target.is_file() or target.is_symlink():
        return False
    record = read_record(target)
    recorded = (
        record is not None
        and record.get("key") == key
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )
    if expected_sha256 is None:
        return recorded
    if recorded and record is not None and record.get("sha256") == expected_sha256:
        return True
    # A file we did not record (or recorded without a digest): its bytes decide.
    return _sha256_file(target) == expected_sha256


def url_key(url: str) -> str:
    """Identity of a URL download for resume and records: the URL without query or fragment."""
    return "url:" + redact_url(url)


def plan_url(
    url: str, options: Options, unpacked: Callable[[Path, str], bool] | None = None
) -> Plan:
    """Plan a plain URL download. Runs on a worker thread (may hash a present file).

    ``unpacked(target, key)`` says whether the file was unpacked and then removed by an earlier
    download (``extract`` and ``remove_archive``): offline, that is no reason to fail, and the
    engine finds its folder instead of fetching."""
    name = url_filename(url)
    base = options.dir if options.dir is not None else default_dir(url)
    base.mkdir(parents=True, exist_ok=True)
    try:
        target = contained(base, name)
    except UnsafePathError as exc:
        raise RefError(f"Unsafe file name in {redact_url(url)}: {exc}.") from None
    key = url_key(url)
    if not options.force and _present(target, key, options.sha256):
        with contextlib.suppress(OSError):
            size = target.stat().st_size
        return Plan(files=[PlannedFile(name, target, size=size)], primary=target)
    if options.offline and not (unpacked is not None and unpacked(target, key)):
        raise OfflineError(
            f"Offline, and {name} from {redact_url(url)} is not on disk at {target}.",
            hint=(
                "Download it once with the network on (without ",
                Option("offline", switch=True),
                ", and HF_HUB_OFFLINE unset).",
            ),
        )
    clean, credential = split_userinfo(url)
    spec = FileSpec(
        name=name, url=clean, target=target, key=key, sha256=options.sha256, credential=credential
    )

    def after(result: TransferResult) -> None:
        _write_record(target, key, result)

    recheck = None if options.force else (lambda: _present(target, key, options.sha256))
    return Plan(
        files=[PlannedFile(name, target, spec=spec, after=after, recheck=recheck)],
        primary=target,
        description=redact_url(url),
    )
