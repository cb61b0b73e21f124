"""Request bodies: JSON only, at most 64 KiB, every field checked, errors that name the field.

Pure (no tornado): :func:`parse_json` takes the raw bytes and the ``Content-Type`` header, and
:class:`Body` reads typed fields out of the decoded object. Unknown fields are ignored; a field
of the wrong type or out of range is an :class:`ApiError` (400) naming it (``options.timeout``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_BODY", "ApiError", "Body", "invalid", "parse_json"]

#: Largest request body accepted (bigger: 413).
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """An answer with an HTTP error status and the one JSON envelope
    ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def envelope(self) -> dict[str, Any]:
        """The JSON body; ``detail`` repeats the message for clients that read that field."""
        return {
            "error": {"code": self.code, "message": self.message, "details": self.details},
            "detail": self.message,
        }


def parse_json(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON object of a request body, or an :class:`ApiError`: 413 over :data:`MAX_BODY`,
    415 for another content type or a body that is not JSON, 400 for JSON that is not an
    object. A cross-site HTML form cannot send ``application/json``, so it cannot start
    anything."""
    if len(body) > MAX_BODY:
        raise ApiError(
            413,
            "payload_too_large",
            f"The request body is {len(body)} bytes; at most {MAX_BODY} are accepted.",
            {"limit_bytes": MAX_BODY, "size_bytes": len(body)},
        )
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Send the body as JSON with Content-Type: application/json "
            f"(got {media[:60] or 'no Content-Type'!r}).",
            {"content_type": media[:60]},
        )
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"The body is not valid JSON ({str(exc)[:80]}).",
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            400,
            "invalid_body",
            f"The body must be a JSON object, not {_kind(data)}.",
        )
    return data


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def invalid(field: str, reason: str) -> ApiError:
    """400 naming the field and why."""
    return ApiError(400, "invalid_field", f"{field}: {reason}.", {"field": field, "reason": reason})


class Body:
    """Typed access to the fields of a JSON object (``prefix`` names nested objects)."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def present(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        max_length: int = 1024,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise invalid(self.name(key), "is required")
            return None
        if not isinstance(value, str):
            raise invalid(self.name(key), f"must be a string, not {_kind(value)}")
        value = value.strip()
        if not value:
            if required:
                raise invalid(self.name(key), "must not be empty")
            return None
        if len(value) > max_length:
            raise invalid(self.name(key), f"is longer than {max_length} characters")
        if "\x00" in value:
            raise invalid(self.name(key), "contains a NUL character")
        if pattern is not None and not pattern.fullmatch(value):
            raise invalid(self.name(key), f"must be {what or 'well-formed'}, got {value[:80]!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid(self.name(key), f"must be true or false, not {_kind(value)}")
        return value

    def number(
        self, key: str, *, low: float, high: float, integer: bool = False
    ) -> int | float | None:
        value = self.data.get(key)
        if value is None:
            return None
        wanted = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            kind = "a whole number" if integer else "a number"
            raise invalid(self.name(key), f"must be {kind}, not {_kind(value)}")
        if not low <= value <= high:
            raise invalid(self.name(key), f"must be between {low:g} and {high:g}, got {value}")
        return value

    def obj(self, key: str) -> Body | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(self.name(key), f"must be an object, not {_kind(value)}")
        return Body(value, f"{self.name(key)}.")

    def raw_object(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(self.name(key), f"must be an object, not {_kind(value)}")
        return value

    def strings(self, key: str, *, max_items: int = 256) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(self.name(key), "must be a string or an array of strings")
        if len(value) > max_items:
            raise invalid(self.name(key), f"has more than {max_items} items")
        return list(value)
