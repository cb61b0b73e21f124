"""The Hugging Face Hub: one session (endpoint, token, credential, client), its API, which files
a reference means, and where its files live on disk (the cache, or a ``local_dir``).

Other packages use what this module exports, never its private modules.
"""

from ._api import HubApi, HubEntry, RepoInfo, gated_error
from ._select import DEFAULT_QUANTS, Want, choose, select_quant
from ._session import HubSession, ResolvedRepo, hf_endpoint, hub_token, open_session
from ._storage import (
    CACHEDIR_TAG_CONTENT,
    CacheRepo,
    LocalDirRepo,
    OnDisk,
    Placement,
    Storage,
    folder_repo,
    repo_folder,
    storage_for,
)

__all__ = [
    "CACHEDIR_TAG_CONTENT",
    "DEFAULT_QUANTS",
    "CacheRepo",
    "HubApi",
    "HubEntry",
    "HubSession",
    "LocalDirRepo",
    "OnDisk",
    "Placement",
    "RepoInfo",
    "ResolvedRepo",
    "Storage",
    "Want",
    "choose",
    "folder_repo",
    "gated_error",
    "hf_endpoint",
    "hub_token",
    "open_session",
    "repo_folder",
    "select_quant",
    "storage_for",
]
