"""Bytes over HTTP: resume, ranges, retries, streaming hashes, atomic publish."""

from ..net import Credential, make_client, origin_of
from ._file import FileTransfer
from ._ranges import RangeSet
from ._spec import FileSpec, TransferResult
from ._state import PartialState, partial_paths

__all__ = [
    "Credential",
    "FileSpec",
    "FileTransfer",
    "PartialState",
    "RangeSet",
    "TransferResult",
    "make_client",
    "origin_of",
    "partial_paths",
]
