"""pytest fixtures for offline tests against a local Hub emulator (registered as a pytest11 plugin).

- ``hf_hub``: a started :class:`~nbmodels.testing.HubEmulator` holding
  :func:`~nbmodels.testing.standard_repos` (ids and tokens in ``hf_hub.standard``). One per test,
  so no test sees another's repos, faults, throttles or request log; closed (threads joined)
  afterwards; anything that failed inside the emulator fails the test.
- ``hf_hub_env``: the same emulator, with the environment pointed at it: ``HF_ENDPOINT``,
  ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_TOKEN_PATH`` in a temporary directory,
  ``HF_HUB_DISABLE_XET=1``, ``HF_HUB_DISABLE_TELEMETRY=1``, and no ``HF_TOKEN`` /
  ``HUGGING_FACE_HUB_TOKEN`` / ``HF_HUB_OFFLINE``; 127.0.0.1 is added to ``NO_PROXY``.
  huggingface_hub reads its environment once, at import, so its ``constants`` module is
  patched as well (and restored after the test).

Importing this module starts nothing; the emulator is imported and started when a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._emulator import HubEmulator

__all__ = ["hf_hub", "hf_hub_env"]

_REMOVED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def hf_hub() -> Iterator[HubEmulator]:
    """A started local Hub emulator with the standard test repos (one per test)."""
    from ._emulator import HubEmulator

    with HubEmulator.with_standard_repos() as hub:
        yield hub
    if hub.server_errors:
        pytest.fail("the Hub emulator failed inside:\n" + "\n".join(hub.server_errors))


@pytest.fixture
def hf_hub_env(hf_hub: HubEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubEmulator:
    """``hf_hub``, with the environment (and huggingface_hub's constants) pointed at it."""
    home = tmp_path / "hf-home"
    cache = home / "hub"
    token_path = home / "token"
    values: dict[str, str] = {
        "HF_ENDPOINT": hf_hub.endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache),
        "HF_TOKEN_PATH": str(token_path),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    constants: ModuleType | None
    try:  # import before the environment changes, so the patch below is undone afterwards
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of nbmodels
        constants = None
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in _REMOVED:
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):  # a configured proxy must not see loopback requests
        current = os.environ.get(name, "")
        monkeypatch.setenv(name, ",".join(filter(None, [current, "127.0.0.1", "localhost"])))
    if constants is not None:
        patched: dict[str, object] = {
            "ENDPOINT": hf_hub.endpoint,
            "HUGGINGFACE_CO_URL_TEMPLATE": hf_hub.endpoint
            + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(cache),
            "HUGGINGFACE_HUB_CACHE": str(cache),
            "HF_ASSETS_CACHE": str(home / "assets"),
            "HF_XET_CACHE": str(home / "xet"),
            "HF_TOKEN_PATH": str(token_path),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HUB_OFFLINE": False,
        }
        for name, constant in patched.items():
            if hasattr(constants, name):
                monkeypatch.setattr(constants, name, constant)
    return hf_hub
