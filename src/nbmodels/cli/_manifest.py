"""The project manifest: the models a project needs, in its ``pyproject.toml``.

    [tool.nbmodels]
    dir = "models"                     # optional defaults for every entry (download options)
    models = [
        "hf:owner/Model-GGUF:Q4_K_M",      # a reference string
        { ref = "owner/tiny-model", revision = "v1.0", include = ["*.json", "*.safetensors"] },
        { ref = "https://example.org/file.bin", dir = "data", sha256 = "..." },
    ]

``nbmodels pull`` with no references pulls every entry of the nearest ``pyproject.toml`` (the
current folder, then its parents). An entry is a reference string or a table with ``ref`` and
any download option (``dir``, ``revision``, ``include``, ``exclude``, ``sha256``, ``force``,
``connections``, ``offline``); a relative ``dir`` is relative to the ``pyproject.toml``.
Tokens never go in a manifest (HF_TOKEN or the huggingface_hub login are used).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._options import Options
from ..errors import NbmodelsError

__all__ = ["MANIFEST_OPTIONS", "Manifest", "ManifestEntry", "find_pyproject", "load_manifest"]

#: Download options an entry (or the table itself, as defaults) may set.
MANIFEST_OPTIONS = (
    "dir",
    "revision",
    "include",
    "exclude",
    "sha256",
    "force",
    "connections",
    "offline",
)


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One model: its reference and the keyword arguments for :func:`nbmodels.download`."""

    ref: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    entries: tuple[ManifestEntry, ...]


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a parent folder."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _error(path: Path, where: str, problem: str) -> NbmodelsError:
    return NbmodelsError(
        f"{path}: {where}: {problem}.",
        hint="Fix [tool.nbmodels] (see `nbmodels pull --help` for the format).",
    )


def _options(path: Path, where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validated download options of an entry (a relative dir becomes absolute)."""
    unknown = sorted(set(raw) - set(MANIFEST_OPTIONS))
    if unknown:
        raise _error(
            path,
            where,
            f"unknown key(s) {', '.join(unknown)} (allowed: ref, {', '.join(MANIFEST_OPTIONS)})",
        )
    out = dict(raw)
    if "dir" in out:
        if not isinstance(out["dir"], str) or not out["dir"].strip():
            raise _error(path, where, "dir must be a folder path")
        folder = Path(out["dir"]).expanduser()
        out["dir"] = str(folder if folder.is_absolute() else path.parent / folder)
    try:
        Options.create(**out)
    except (TypeError, ValueError) as exc:
        raise _error(path, where, str(exc).rstrip(".")) from None
    return out


def load_manifest(start: Path | None = None) -> Manifest:
    """Read ``[tool.nbmodels]`` from the nearest ``pyproject.toml``; raises NbmodelsError
    (what is wrong, where, and what to do) when there is none or it is malformed."""
    origin = (start or Path.cwd()).resolve()
    path = find_pyproject(origin)
    if path is None:
        raise NbmodelsError(
            f"No references given and no pyproject.toml in {origin} or its parents.",
            hint="Name what to pull (nbmodels pull owner/repo:Q4_K_M), or list the models "
            "under [tool.nbmodels] models = [...] in pyproject.toml.",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NbmodelsError(f"Cannot read {path}: {exc}.", hint="Fix the TOML syntax.") from None
    tool = data.get("tool", {})
    table = tool.get("nbmodels") if isinstance(tool, dict) else None
    if not isinstance(table, dict) or "models" not in table:
        raise NbmodelsError(
            f"No references given and {path} has no [tool.nbmodels] models list.",
            hint='Add one: [tool.nbmodels] models = ["owner/repo:Q4_K_M"], or name references.',
        )
    models = table["models"]
    if not isinstance(models, list):
        raise _error(path, "tool.nbmodels.models", "must be a list")
    defaults = _options(path, "[tool.nbmodels]", {k: v for k, v in table.items() if k != "models"})
    entries: list[ManifestEntry] = []
    for i, item in enumerate(models):
        where = f"tool.nbmodels.models[{i}]"
        ref: object
        own: dict[str, Any] = {}
        if isinstance(item, str):
            ref = item
        elif isinstance(item, dict):
            ref = item.get("ref")
            own = _options(path, where, {k: v for k, v in item.items() if k != "ref"})
        else:
            raise _error(path, where, "an entry is a reference string or a table with ref = ...")
        if not isinstance(ref, str) or not ref.strip():
            raise _error(path, where, "ref must be a non-empty reference string")
        entries.append(ManifestEntry(ref.strip(), {**defaults, **own}))
    return Manifest(path, tuple(entries))
