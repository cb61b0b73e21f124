"""Keep secrets out of everything a person or a file can see: the one redactor.

- A URL (:func:`redact_url`) loses its userinfo, its query string (shown as ``?…``: signed CDN
  URLs carry credentials there) and its fragment.
- Free text (:func:`redact_text`: error bodies, exception messages) loses the same parts of every
  ``scheme://`` URL in it (``hf://`` URIs are references, kept as written), anything shaped like
  a Hugging Face token (``hf_`` and 8 or more letters or digits) or an ``Authorization`` value
  (``Bearer …``, ``Basic …``), and the values of query parameters that carry signatures.
- A reference as the user typed it (:func:`redact_reference`, quoted in a ``RefError``): as free
  text, and once a URL is involved, every query string and fragment wherever it stands.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_reference", "redact_text", "redact_url"]

#: Hugging Face tokens (``hf_`` + 34 characters today; shorter ones count too) and the
#: credentials of an ``Authorization`` header.
_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
#: Query parameters that carry signatures or credentials (S3, CloudFront, GCS, generic).
_SIGNED_PARAM_RE = re.compile(
    r"(?i)\b(X-Amz-[A-Za-z-]+|X-Goog-[A-Za-z-]+|Signature|Key-Pair-Id|Policy|sig|token"
    r"|access_token|api_key|apikey|key)=[^&\s\"'<>]+"
)
#: A ``scheme://…`` URL inside free text, up to the next white space.
_URL_IN_TEXT_RE = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*)://\S*")
_REDACTED = "<redacted>"


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


def _url_in_text(m: re.Match[str]) -> str:
    """One URL of free text, as written but without userinfo, query (``?…``) and fragment
    (text, not :func:`redact_url`: a malformed URL is shown as it was typed)."""
    url = m.group(0)
    if m.group(1).lower() == "hf":
        return url
    scheme_end = url.index("://") + 3
    rest = url[scheme_end:]
    authority_end = min((i for i in (rest.find(ch) for ch in "/?#") if i != -1), default=len(rest))
    authority = rest[:authority_end].rsplit("@", 1)[-1]  # drop user:password@
    rest = (authority + rest[authority_end:]).split("#", 1)[0]
    if "?" in rest:
        rest = rest.split("?", 1)[0] + "?…"
    return url[:scheme_end] + rest


def redact_text(text: str) -> str:
    """Remove URL secrets, token-shaped strings and signed parameters from free text."""
    text = _URL_IN_TEXT_RE.sub(_url_in_text, text)
    text = _TOKEN_RE.sub(_REDACTED, text)
    return _SIGNED_PARAM_RE.sub(lambda m: f"{m.group(1)}={_REDACTED}", text)


def redact_reference(text: str) -> str:
    """A reference as typed, fit to quote: :func:`redact_text`, and when it holds a URL (not an
    ``hf://`` URI) every query string and fragment is dropped, wherever it stands."""
    shown = redact_text(text)
    if any(m.group(1).lower() != "hf" for m in _URL_IN_TEXT_RE.finditer(text)):
        shown = re.sub(r"#\S*", "", re.sub(r"\?[^\s#]*", "?…", shown))
    return shown
