"""What is on disk: listing, safe removal and verification of the Hugging Face cache."""

from ._remove import Removal, remove
from ._scan import CachedFile, CachedRepo, LocalEntry, local_entries, resolve_cached, scan_cache
from ._verify import Check, hub_expectations, verify, verify_offline

__all__ = [
    "CachedFile",
    "CachedRepo",
    "Check",
    "LocalEntry",
    "Removal",
    "hub_expectations",
    "local_entries",
    "remove",
    "resolve_cached",
    "scan_cache",
    "verify",
    "verify_offline",
]
