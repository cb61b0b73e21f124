"""Keep secrets out of everything a person or a file can see.

URLs lose their query string and fragment (signed CDN URLs carry credentials there) and any
userinfo; free text loses anything shaped like a Hugging Face token or a bearer header.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
#: Query parameters that carry signatures or credentials (S3, CloudFront, GCS, generic).
_SIGNED_PARAM_RE = re.compile(
    r"(?i)\b(X-Amz-[A-Za-z-]+|X-Goog-[A-Za-z-]+|Signature|Key-Pair-Id|Policy|sig|token"
    r"|access_token|api_key|apikey|key)=[^&\s\"'<>]+"
)


def redact_url(url: str) -> str:
    """``https://user:pw@cdn/x?sig=...`` -> ``https://cdn/x`` (query shown as ``?…``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    try:
        port = parts.port
    except ValueError:  # "host:99999", "host:abc": show no port rather than fail
        port = None
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    if ":" in (parts.hostname or "") and not host.startswith("["):
        host = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_text(text: str) -> str:
    """Remove token-shaped strings from free text (error bodies, exception messages)."""
    text = _TOKEN_RE.sub("<redacted>", text)
    return _SIGNED_PARAM_RE.sub(lambda m: f"{m.group(1)}=<redacted>", text)
