"""GGUF file names, as llama.cpp writes them (pure): quant tags (``Model-Q4_K_M.gguf``, also
from a quant-named folder), split files (``Model-Q8_0-00001-of-00003.gguf``: the one rule for
their parts) and sidecars (``mmproj-*``, ``*imatrix*``) that are not quants."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["is_sidecar", "split_complete", "split_part", "split_quant_name", "split_siblings"]

#: The split suffix of a GGUF part: ``-00001-of-00003.gguf`` (HUB.md, GGUF naming).
_SPLIT_RE: Final = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_TAG_RE: Final = re.compile(
    r"""
    I?Q[0-9]+(?:_[A-Z0-9]+)*      # Q4_K_M, Q8_0, IQ2_XXS, Q4_0_4_4, Q4_K_XL
    | TQ[0-9]+(?:_[0-9]+)?        # TQ1_0 (ternary)
    | B?FP?[0-9]+                 # F16, F32, BF16, FP16, FP8
    | MXFP[0-9]+(?:_MOE)?         # MXFP4, MXFP4_MOE
    | NVFP4
    """,
    re.IGNORECASE | re.VERBOSE | re.ASCII,
)
_SIDECAR_MARKERS: Final = ("mmproj", "imatrix")


def is_sidecar(filename: str) -> bool:
    """True for GGUF companion files that are not model weights (``mmproj-*``, ``*imatrix*``).

    Only the last path component is looked at; the match is case-insensitive.
    """
    base = filename.rsplit("/", 1)[-1].lower()
    return any(marker in base for marker in _SIDECAR_MARKERS)


def split_quant_name(filename: str) -> tuple[str | None, int | None, int | None]:
    """Split a GGUF file name into ``(quant tag, split part, split count)``.

    ``"Model-Q4_K_M.gguf"`` -> ``("Q4_K_M", None, None)``;
    ``"Model-Q8_0-00001-of-00003.gguf"`` -> ``("Q8_0", 1, 3)``;
    ``"Model-Q4_K_M/Model-00002-of-00004.gguf"`` -> ``("Q4_K_M", 2, 4)`` (quant-named folder);
    ``"mmproj-model-f16.gguf"`` -> ``(None, None, None)`` (sidecar); non-GGUF names -> all None.

    The quant tag is the last ``-``/``.``-separated word of the name (split suffix removed) when
    it looks like a llama.cpp quant type (``Q4_K_M``, ``IQ2_XXS``, ``Q8_0``, ``F16``, ``BF16``,
    ``TQ1_0``, ``MXFP4``...), with an unsloth ``UD-`` prefix kept (``UD-Q4_K_XL``); its case is kept
    as in the file name. Names like ``model.gguf`` or ``Llama-3-8B.gguf`` have no quant tag.
    A split suffix counts only when ``1 <= part <= count``.
    """
    base = filename.rsplit("/", 1)[-1]
    if not base.lower().endswith(".gguf"):
        return None, None, None
    part: int | None = None
    count: int | None = None
    stem = base[: -len(".gguf")]
    split = split_part(base)
    if split is not None and 1 <= split[1] <= split[2]:
        stem, part, count = split
    if is_sidecar(filename):
        return None, part, count
    quant = _quant_tag(stem)
    if quant is None and "/" in filename:
        quant = _quant_tag(filename.rsplit("/", 2)[-2])
    return quant, part, count


def _quant_tag(stem: str) -> str | None:
    """The quant tag that ends ``stem`` (``Model-Q4_K_M`` -> ``Q4_K_M``), or None."""
    words = re.split(r"[-.]", stem)
    last = words[-1]
    if not _QUANT_TAG_RE.fullmatch(last):
        return None
    if len(words) >= 2 and words[-2].upper() == "UD":
        return stem[-(len(last) + 3) :]
    return last


def split_part(path: str) -> tuple[str, int, int] | None:
    """``("dir/Model-Q8_0", part, count)`` for a name with a split suffix, else None (the
    numbers as written: :func:`split_quant_name` counts only ``1 <= part <= count``)."""
    m = _SPLIT_RE.search(path)
    if m is None:
        return None
    return path[: m.start()], int(m.group(1)), int(m.group(2))


def split_siblings(path: str, all_paths: Iterable[str]) -> list[str]:
    """For a part of a split GGUF, every part in ``all_paths`` (sorted, part 1 first);
    otherwise ``[path]``."""
    split = split_part(path)
    if split is None:
        return [path]
    stem, _part, count = split
    pattern = re.compile(re.escape(stem) + r"-(\d{5})-of-" + f"{count:05d}" + r"\.gguf$", re.I)
    return sorted(p for p in all_paths if pattern.fullmatch(p))


def split_complete(files: Sequence[str], named: str) -> bool:
    """``files`` holds every part of the split GGUF ``named`` (one of its parts), counted from
    the name's ``-of-NNNNN`` (not from what a listing happens to hold); True for a file that is
    not split."""
    _quant, _part, count = split_quant_name(named.rsplit("/", 1)[-1])
    return count is None or len(files) == count
