"""One Hub session: what planning (``sources``), inspection (``cards``) and verification
(``cache``) set up before they ask the Hub anything, written once.

- the endpoint (``$HF_ENDPOINT``, read now) and the token for it: ``token=`` (False: none),
  else huggingface_hub's lookup (``HF_TOKEN``, the saved login, Colab's secret), bound to the
  endpoint's origin as a :class:`Credential` (docs/download-contract.md, rule 5);
- one HTTP client (the caller's, or one the session opens and closes);
- :meth:`HubSession.find`: which reading of a reference the Hub knows (one request each, the
  owner/repo reading first), as a :class:`ResolvedRepo`: its :class:`HubApi`, its
  :class:`RepoInfo` at the revision (commit, gated, file list) and its :class:`Storage`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2

from .._config import Settings
from .._options import Options
from ..net import Credential, make_client, origin_of
from ..refs import ModelRef
from ._api import HubApi, RepoInfo, find_repo
from ._storage import Storage, storage_for

__all__ = ["HubSession", "ResolvedRepo", "hf_endpoint", "hub_token", "open_session"]

_DEFAULT_ENDPOINT = "https://huggingface.co"


def hf_endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` (read now), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


def hub_token(options: Options) -> str | None:
    """The Hub token to send: ``token=`` (False: none), else HF_TOKEN or the saved login."""
    if options.token is False:
        return None
    if isinstance(options.token, str):
        return options.token
    from huggingface_hub import get_token  # the standard lookup: HF_TOKEN, login file, Colab

    return get_token()


@dataclass(frozen=True, slots=True)
class ResolvedRepo:
    """A repository the Hub knows, at a revision: ``ref`` is the reading it knows."""

    ref: ModelRef
    api: HubApi
    info: RepoInfo
    storage: Storage

    @property
    def commit(self) -> str:
        return self.info.commit


class HubSession:
    """The endpoint, the credential for its origin and the HTTP client every Hub call of one
    operation shares."""

    def __init__(self, client: httpx2.AsyncClient, settings: Settings, options: Options) -> None:
        self.client = client
        self.settings = settings
        self.options = options
        self.endpoint = hf_endpoint()
        token = hub_token(options)
        self.credential = Credential(token, origin_of(self.endpoint)) if token else None

    def api(self, reading: ModelRef) -> HubApi:
        """The API of one reading's repository (no request yet)."""
        assert reading.repo_id is not None
        return HubApi(
            self.client,
            self.settings,
            endpoint=self.endpoint,
            repo_type=reading.repo_type,
            repo_id=reading.repo_id,
            credential=self.credential,
        )

    async def find(self, ref: ModelRef, revision: str | None) -> ResolvedRepo:
        """The first reading of ``ref`` whose repository the Hub knows, at ``revision``
        (:func:`find_repo`: one request per reading tried; its answer is kept, so asking the
        commit again costs nothing)."""
        reading, api, info = await find_repo(ref.readings, revision, self.api)
        return ResolvedRepo(reading, api, info, storage_for(reading, self.options))


@contextlib.asynccontextmanager
async def open_session(
    options: Options, settings: Settings, *, client: httpx2.AsyncClient | None = None
) -> AsyncIterator[HubSession]:
    """A :class:`HubSession` on ``client``, or on a client of its own, closed on exit."""
    if client is not None:
        yield HubSession(client, settings, options)
        return
    own = make_client(settings)
    try:
        yield HubSession(own, settings, options)
    finally:
        await own.aclose()
