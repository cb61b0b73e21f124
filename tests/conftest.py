"""Shared fixtures: an isolated NBMODELS_HOME and engine per test, the local Hub, the fault
server, and a plain HTTP client."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from nbmodels._config import Settings
from nbmodels.engine import _engine
from nbmodels.testing import HubEmulator, StandardRepos
from tests.faultserver import FaultServer

#: Short waits so failure paths finish quickly; nothing here makes a test depend on speed.
FAST = Settings(
    connect_timeout=5.0,
    read_timeout=2.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    retry_after_cap=5.0,
    max_attempts=4,
    refused_backoff_base=0.05,
    checkpoint_interval=0.05,
    progress_interval=0.05,
    stall_after=0.5,
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own NBMODELS_HOME and HF cache, and no tokens from the machine."""
    monkeypatch.setenv("NBMODELS_HOME", str(tmp_path / "nbhome"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield


@pytest.fixture
def settings() -> Settings:
    return FAST


@contextlib.contextmanager
def installed_engine(settings: Settings) -> Iterator[_engine.Engine]:
    """A fresh engine, installed as the process-wide one while the block runs."""
    eng = _engine.Engine(settings, home=Path(os.environ["NBMODELS_HOME"]))
    previous = _engine.set_engine(eng)
    try:
        yield eng
    finally:
        eng.close()
        _engine.set_engine(previous)


@pytest.fixture
def engine(tmp_path: Path, settings: Settings) -> Iterator[_engine.Engine]:
    """A fresh engine, installed as the process-wide one for the test."""
    with installed_engine(settings) as eng:
        yield eng


@pytest.fixture
def hub(hf_hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> HubEmulator:
    """The shipped ``hf_hub`` emulator (the standard repos; an error inside it fails the test)
    with ``HF_ENDPOINT`` pointing at it; the cache is the test's own ``HF_HOME``."""
    monkeypatch.setenv("HF_ENDPOINT", hf_hub.endpoint)
    return hf_hub


@pytest.fixture
def ids(hub: HubEmulator) -> StandardRepos:
    """The ids and tokens of the standard repos of ``hub``."""
    assert hub.standard is not None
    return hub.standard


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def http_client(**kwargs: object) -> httpx2.Client:
    """A plain-HTTP client: no proxies from the environment, no TLS setup (fast to create)."""
    return httpx2.Client(verify=False, trust_env=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with http_client() as client:
        yield client


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes that differ at every offset (so a splice is always visible)."""
    import hashlib

    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])
