"""Where nbmodels keeps its own things, where the Hugging Face cache is, and the tunables of the
network layer.

Everything is read at call time (not import time) so tests and notebooks can change the
environment while a process runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["Settings", "env_flag", "hf_cache_dir", "nbmodels_home"]

_TRUE = {"1", "on", "yes", "true"}


def env_flag(name: str) -> bool:
    """huggingface_hub's convention: 1/ON/YES/TRUE in any case mean true."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def nbmodels_home() -> Path:
    """``$NBMODELS_HOME`` or the user cache dir (e.g. ``~/.cache/nbmodels``)."""
    env = os.environ.get("NBMODELS_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("nbmodels", appauthor=False))


def hf_cache_dir() -> Path:
    """huggingface_hub's cache directory: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


@dataclass(frozen=True, slots=True)
class Settings:
    """Network and engine tunables. Tests shorten the waits; users rarely need to touch these."""

    max_concurrent_jobs: int = 3
    connect_timeout: float = 15.0
    #: A read that receives nothing for this long fails the attempt (and is retried).
    read_timeout: float = 30.0
    max_redirects: int = 10
    #: Consecutive failed attempts without new bytes before giving up.
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    #: Consecutive refused connections (nothing listens at that address: a wrong port, a
    #: server that is down) before giving up, and the base of their backoff: a few attempts
    #: over a few seconds, where a dropped connection gets the whole budget above.
    refused_attempts: int = 3
    refused_backoff_base: float = 1.0
    #: Largest Retry-After we honour; longer asks wait this long.
    retry_after_cap: float = 60.0
    #: How often the partial file's state is made durable while bytes arrive.
    checkpoint_interval: float = 2.0
    #: Progress events per second per job, at most.
    progress_interval: float = 0.25
    #: A transfer that receives nothing for this long shows as stalled (0 B/s).
    stall_after: float = 5.0
    #: Free space kept beyond the file itself.
    space_margin: int = 16 * 1024 * 1024

    @classmethod
    def from_env(cls) -> Settings:
        """Defaults, with a few overrides for tests and slow links (``NBMODELS_*`` variables)."""
        kwargs: dict[str, float | int] = {}
        for name, key, cast in (
            ("NBMODELS_MAX_JOBS", "max_concurrent_jobs", int),
            ("NBMODELS_READ_TIMEOUT", "read_timeout", float),
            ("NBMODELS_CONNECT_TIMEOUT", "connect_timeout", float),
            ("NBMODELS_BACKOFF_BASE", "backoff_base", float),
            ("NBMODELS_MAX_ATTEMPTS", "max_attempts", int),
            ("NBMODELS_CHECKPOINT_INTERVAL", "checkpoint_interval", float),
        ):
            raw = os.environ.get(name)
            if raw:
                kwargs[key] = cast(raw)
        return cls(**kwargs)  # type: ignore[arg-type]
