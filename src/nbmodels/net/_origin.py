"""Origins and the credentials bound to them (docs/download-contract.md, rule 5)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["Credential", "Origin", "origin_of", "split_userinfo"]

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """(scheme, host, port) with default ports filled in; raises ValueError for non-http(s)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"only http and https URLs are supported, not {scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("URL has no host")
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret that may be sent to exactly one origin: a bearer token (the Hub), or the
    user:password of a URL (``Basic``)."""

    token: str
    origin: Origin
    scheme: str = "Bearer"

    @classmethod
    def basic(cls, user: str, password: str, origin: Origin) -> Credential:
        raw = f"{unquote(user)}:{unquote(password)}".encode()
        return cls(base64.b64encode(raw).decode("ascii"), origin, "Basic")

    def __repr__(self) -> str:
        return f"Credential(origin={self.origin!r}, {self.scheme} <hidden>)"

    def headers_for(self, url: str) -> dict[str, str]:
        try:
            ok = origin_of(url) == self.origin
        except ValueError:
            ok = False
        return {"Authorization": f"{self.scheme} {self.token}"} if ok else {}


def split_userinfo(url: str) -> tuple[str, Credential | None]:
    """``http://user:pw@host/x`` -> (``http://host/x``, a Basic credential for that origin).

    The URL that travels (and that httpx2 logs) then never carries the password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    cred = Credential.basic(parts.username or "", parts.password or "", origin_of(clean))
    return clean, cred
