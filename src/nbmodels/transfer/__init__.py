"""Bytes over HTTP into a file: resume, ranges, retries, streaming hashes, atomic publish.

:class:`FileTransfer` (:mod:`._file`) fetches one :class:`FileSpec` (:mod:`._spec`): its
partial file and state (:mod:`._partial`, :mod:`._state`), one request and its answer
(:mod:`._fetch`, :mod:`._answer`), connections and pieces (:mod:`._pacing`, :mod:`._parts`),
the fast path (:mod:`._rawbody`), the hash (:mod:`._hasher`). The HTTP client and
credentials come from :mod:`nbmodels.net`, re-exported here for the sources that use both.
"""

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
