"""Authentication of the standalone server (``nbmodels serve``); pure, no tornado.

- A token is always required: ``Authorization: Bearer <token>`` (what LM Studio clients send),
  ``Authorization: token <token>`` (Jupyter's form), or ``?token=`` on a GET (a browser's
  ``EventSource`` cannot set headers). Compared in constant time; never logged.
- Bound to loopback (the default), the ``Host`` header must name a loopback address or
  ``localhost``: a page on another site that rebinds its DNS name to 127.0.0.1 is refused.
- No CORS headers unless an origin was allowed (``--allow-origin``).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Access", "host_is_loopback", "new_token"]

_AUTH_HEADER = re.compile(r"(?:bearer|token)\s+(\S+)\s*", re.IGNORECASE)


def new_token() -> str:
    return secrets.token_hex(24)


def host_is_loopback(host: str) -> bool:
    """``localhost``, ``*.localhost``, ``127.x.x.x``, ``::1`` (with or without brackets)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def host_header_name(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``[::1]``)."""
    value = value.strip()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class Access:
    """Who may use a standalone server: its token, whether ``Host`` is checked, which
    browser origins get CORS headers."""

    token: str
    check_host: bool = True
    allow_origins: tuple[str, ...] = ()

    def token_ok(self, headers: Mapping[str, str], query_token: str | None) -> bool:
        given = None
        match = _AUTH_HEADER.fullmatch(headers.get("Authorization", ""))
        if match is not None:
            given = match.group(1)
        elif query_token:
            given = query_token
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def host_ok(self, host_header: str) -> bool:
        return not self.check_host or host_is_loopback(host_header_name(host_header))

    def origin_allowed(self, origin: str | None) -> bool:
        if not origin or not self.allow_origins:
            return False
        return "*" in self.allow_origins or origin in self.allow_origins
