"""Keep secrets out of everything a person or a file can see.

URLs lose their query string and fragment (signed CDN URLs carry credentials there) and any
userinfo; free text loses anything shaped like a Hugging Face token or a bearer header.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+")


def redact_url(url: str) -> str:
    """``https://user:pw@cdn/x?sig=...`` -> ``https://cdn/x`` (query shown as ``?…``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if ":" in (parts.hostname or "") and not host.startswith("["):
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_text(text: str) -> str:
    """Remove token-shaped strings from free text (error bodies, exception messages)."""
    return _TOKEN_RE.sub("<redacted>", text)
