"""Reference -> plan: which files to fetch, from where, to which paths."""

from ._base import Plan, PlannedFile, SourceContext
from ._hf import plan_hf
from ._url import plan_url, url_filename, url_key

__all__ = [
    "Plan",
    "PlannedFile",
    "SourceContext",
    "plan_hf",
    "plan_url",
    "url_filename",
    "url_key",
]
