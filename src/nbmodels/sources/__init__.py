"""Reference -> plan: which files to fetch, from where, to which paths."""

from ._base import Plan, PlannedFile, SourceContext
from ._hf import HubListing, list_hf, plan_hf, plan_listing
from ._url import plan_url, url_filename, url_key

__all__ = [
    "HubListing",
    "Plan",
    "PlannedFile",
    "SourceContext",
    "list_hf",
    "plan_hf",
    "plan_listing",
    "plan_url",
    "url_filename",
    "url_key",
]
