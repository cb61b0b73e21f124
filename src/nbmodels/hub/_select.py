"""Which files of a Hub repository a reference means (pure: no I/O).

Quant rules (docs/public-api.md, References): a quant matches case-insensitively, brings every
part of a split GGUF, also inside quant-named folders; a GGUF repository without a quant means
its default quant (Q4_K_M, else Q8_0, else the only one); sidecars (``mmproj``, ``imatrix``)
are not quants. A named part of a split GGUF brings every part. Anything missing is a
:class:`NotFoundError` that carries what does exist (``candidates``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from .._options import Options
from ..errors import NotFoundError
from ..refs import ModelRef, is_sidecar, split_part, split_quant_name, split_siblings

__all__ = ["DEFAULT_QUANTS", "Want", "choose", "select_quant"]

DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
_NEAR = 10


def _gguf_models(paths: Iterable[str]) -> dict[str, list[str]]:
    """Quant tag (upper-cased) -> GGUF weight files with that tag."""
    out: dict[str, list[str]] = {}
    for p in paths:
        if not p.lower().endswith(".gguf") or is_sidecar(p):
            continue
        quant, _part, _count = split_quant_name(p.rsplit("/", 1)[-1])
        if quant is None:
            # The folder may carry the tag (Model-Q8_0/xxx-00001-of-00003.gguf).
            folder = p.rsplit("/", 1)[0] if "/" in p else ""
            quant = split_quant_name(folder.rsplit("/", 1)[-1] + ".gguf")[0] if folder else None
        if quant is not None:
            out.setdefault(quant.upper(), []).append(p)
    return out


def select_quant(paths: list[str], quant: str | None, repo: str) -> list[str]:
    """The files of a quant (all split parts), or of the default quant when ``quant`` is None.

    Raises NotFoundError listing the quants that exist.
    """
    models = _gguf_models(paths)
    available = sorted(models)
    if quant is None:
        for default in DEFAULT_QUANTS:
            if default in models:
                quant = default
                break
        else:
            if len(models) == 1:
                quant = available[0]
            else:
                raise NotFoundError(
                    f"{repo} has several quants and none is a default "
                    f"({', '.join(DEFAULT_QUANTS)}).",
                    candidates=available,
                    hint=f"Pick one: {', '.join(f'{repo}:{q}' for q in available)}.",
                )
    files = models.get(quant.upper())
    if not files:
        raise NotFoundError(
            f"{repo} has no {quant} quant."
            + (f" Available: {', '.join(available)}." if available else " It has no GGUF files."),
            candidates=available,
            hint=f"Use one of: {', '.join(f'{repo}:{q}' for q in available)}."
            if available
            else None,
        )
    groups = _split_groups(files)
    if len(groups) > 1:
        firsts = sorted(g[0] for g in groups.values())
        raise NotFoundError(
            f"{repo} has several {quant} files: {', '.join(firsts)}.",
            candidates=firsts,
            hint=f"Name the file instead, e.g. hf:{repo}/{firsts[0]}.",
        )
    return next(iter(groups.values()))


def _split_groups(files: list[str]) -> dict[str, list[str]]:
    """Group split parts of one model (same stem and count); parts sorted, part 1 first."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for f in files:
        split = split_part(f)
        if split is not None:
            stem, part, count = split
            groups.setdefault(f"{stem}|{count}", []).append((part, f))
        else:
            groups.setdefault(f, []).append((1, f))
    return {k: [f for _n, f in sorted(v)] for k, v in groups.items()}


def _filter(paths: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    out = paths
    if include:
        out = [p for p in out if any(fnmatch.fnmatch(p, pat) for pat in include)]
    if exclude:
        out = [p for p in out if not any(fnmatch.fnmatch(p, pat) for pat in exclude)]
    return out


def _in_folder(paths: list[str], folder: str) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    return [p for p in paths if p.startswith(prefix)]


@dataclass(frozen=True, slots=True)
class Want:
    """Which files a reference means, given the repo's file list."""

    files: list[str]
    primary: str | None  # a repo path, or None for a folder/snapshot
    folder: str | None = None


def choose(ref: ModelRef, options: Options, paths: list[str], repo: str) -> Want:
    if ref.path is not None and not ref.is_dir:
        if ref.path not in paths:
            near = _near(ref.path, paths)
            raise NotFoundError(
                f"{ref.path} does not exist in {repo} at {ref.revision or 'main'}."
                + (f" Similar files: {', '.join(near[:3])}." if near else ""),
                candidates=near,
                hint="Name a file the repository has (`nbmodels inspect` shows its card).",
            )
        files = split_siblings(ref.path, paths)
        return Want(files=files, primary=files[0])
    if ref.path is not None:  # a folder
        files = _filter(_in_folder(paths, ref.path), options.include, options.exclude)
        if not files:
            raise NotFoundError(f"Folder {ref.path} in {repo} is empty or does not exist.")
        return Want(files=files, primary=None, folder=ref.path.rstrip("/"))
    is_gguf_repo = bool(_gguf_models(paths))
    if ref.quant is not None or (is_gguf_repo and not options.include and not options.exclude):
        files = select_quant(paths, ref.quant, repo)
        return Want(files=files, primary=files[0])
    files = _filter(paths, options.include, options.exclude)
    if not files:
        given = (("include", options.include), ("exclude", options.exclude))
        chosen = " and ".join(f"{name} {list(globs)}" for name, globs in given if globs)
        what = f"is selected by {chosen}" if chosen else "was found"
        raise NotFoundError(f"No file of {repo} {what}.", candidates=paths[:20])
    return Want(files=files, primary=None)


def _near(path: str, paths: list[str]) -> list[str]:
    """Files a mistyped ``path`` probably meant: similar names first, then the same name in
    another folder, then files of the same kind (extension)."""
    name = path.rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else None
    out = difflib.get_close_matches(path, paths, n=5, cutoff=0.6)
    out += [p for p in paths if p.rsplit("/", 1)[-1].lower() == name]
    if ext is not None:
        out += [p for p in paths if p.lower().endswith("." + ext) and not is_sidecar(p)]
    return list(dict.fromkeys(out))[:_NEAR]
