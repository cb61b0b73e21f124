"""Fixed repo sets: the small standard set the tests use, and larger generated demo models.

Each set is added to an emulator through the few methods of :class:`RepoHost` (a
:class:`~nbmodels.testing.HubEmulator` is one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from ._content import GeneratedFile
from ._gguf import gguf_file
from ._repo import FileValue, HubFile, HubRepo
from ._safetensors import safetensors_file

__all__ = ["DemoRepos", "RepoHost", "StandardRepos", "demo_repos", "standard_repos"]

_KIB = 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class StandardRepos:
    """Ids and tokens of the :func:`standard_repos` set (the values never change).

    - ``gguf``: ``Tiny-Q4_K_M.gguf``; ``Tiny-Q8_0-0000{1,2,3}-of-00003.gguf``; a folder quant
      ``Tiny-F16/Tiny-F16-0000{1,2}-of-00002.gguf``; ``mmproj-f16.gguf``; ``README.md``,
      ``config.json``, ``.gitattributes``. Branch ``dev`` (adds ``Tiny-Q2_K.gguf``), tag
      ``v1.0`` (= first commit of main), ``refs/pr/1`` (adds ``NOTES.md``).
    - ``safetensors``: config, tokenizer, ``model.safetensors`` (256 KiB).
    - ``sharded``: two ``model-0000i-of-00002.safetensors`` shards and the index json.
    - ``dataset`` (repo_type ``"dataset"``): ``data/train-00000-of-00001.parquet`` and
      ``data/test.csv``.
    - ``space`` (repo_type ``"space"``): ``app.py``, ``requirements.txt``.
    - ``gated`` / ``private``: need ``token``; ``token_without_grant`` is valid but not granted.
    - ``blobs``: ``blob-1MiB.bin``, ``blob-3MiB.bin`` (LFS), ``git-256KiB.dat`` (a git file, for
      Range on the Hub origin), ``small.txt``, ``nested/deep/file.txt``.
    - ``many_files``: 120 small files in ``dir0``...``dir5`` plus ``README.md`` (pagination).
    - ``legacy``: a one-segment id (``tiny-legacy``), like ``gpt2``.
    """

    gguf: str = "nbm-test/Tiny-GGUF"
    safetensors: str = "nbm-test/tiny-safetensors"
    sharded: str = "nbm-test/tiny-sharded"
    dataset: str = "nbm-test/tiny-dataset"
    space: str = "nbm-test/tiny-space"
    gated: str = "nbm-test/gated-model"
    private: str = "nbm-test/private-model"
    blobs: str = "nbm-test/blobs"
    many_files: str = "nbm-test/many-files"
    legacy: str = "tiny-legacy"
    token: str = "hf_nbmtest_granted"  # noqa: S105 - a fake token for the emulator
    token_without_grant: str = "hf_nbmtest_not_granted"  # noqa: S105 - a fake token


class RepoHost(Protocol):
    """What the repo sets use of a :class:`~nbmodels.testing.HubEmulator`."""

    standard: StandardRepos | None

    def add_repo(self, repo_id: str, *args: Any, **kwargs: Any) -> HubRepo: ...
    def add_gguf_repo(self, repo_id: str, *args: Any, **kwargs: Any) -> HubRepo: ...
    def add_safetensors_repo(self, repo_id: str, *args: Any, **kwargs: Any) -> HubRepo: ...
    def add_token(self, token: str, *args: Any, **kwargs: Any) -> None: ...


def _config(name: str) -> bytes:
    return json.dumps({"model_type": "llama", "name": name}, indent=2).encode() + b"\n"


def standard_repos(hub: RepoHost) -> StandardRepos:
    """Add the standard test repos (about 6 MB, all generated) to ``hub``; see
    :class:`StandardRepos`. Also sets ``hub.standard``."""
    ids = StandardRepos()
    _standard_gguf(hub, ids.gguf)
    hub.add_safetensors_repo(ids.safetensors, size=256 * _KIB)
    hub.add_safetensors_repo(ids.sharded, size=128 * _KIB, shards=2)
    hub.add_repo(ids.dataset, _dataset(), repo_type="dataset")
    hub.add_repo(ids.space, _SPACE, repo_type="space")
    for repo_id, flags in ((ids.gated, {"gated": True}), (ids.private, {"private": True})):
        weights = safetensors_file(32 * _KIB, seed=repo_id)
        files = {"config.json": _config(repo_id), "model.safetensors": weights}
        hub.add_repo(repo_id, files, **flags)
    hub.add_repo(ids.blobs, _blobs())
    many: dict[str, FileValue] = {"README.md": "# many files\n"}
    many.update({f"dir{i // 20}/file{i:03d}.txt": f"file {i}\n" for i in range(120)})
    hub.add_repo(ids.many_files, many)
    hub.add_repo(ids.legacy, {"config.json": _config("legacy"), "README.md": "# legacy\n"})
    hub.add_token(ids.token, [ids.gated, ids.private])
    hub.add_token(ids.token_without_grant)
    hub.standard = ids
    return ids


def _standard_gguf(hub: RepoHost, repo_id: str) -> None:
    """The GGUF repo of the standard set, with a tag, a branch and a pull request."""
    gguf = hub.add_gguf_repo(
        repo_id,
        quants=("Q4_K_M", "Q8_0"),
        folder_quants=("F16",),
        split={"Q8_0": 3, "F16": 2},
        size=96 * _KIB,
        sidecar_size=24 * _KIB,
        files={"config.json": _config("Tiny")},
    )
    gguf.create_tag("v1.0")
    gguf.create_branch("dev")
    gguf.commit({"Tiny-Q2_K.gguf": gguf_file(48 * _KIB, quant="Q2_K")}, branch="dev")
    gguf.create_pr({"NOTES.md": "# Notes\n"})


def _dataset() -> dict[str, FileValue]:
    return {
        "README.md": "---\nlicense: cc0-1.0\n---\n# Tiny dataset\n",
        "data/train-00000-of-00001.parquet": GeneratedFile(64 * _KIB, "dataset-train"),
        "data/test.csv": "id,text\n1,hello\n2,world\n",
    }


_SPACE: dict[str, FileValue] = {"app.py": "print('hello')\n", "requirements.txt": "gradio\n"}


def _blobs() -> dict[str, FileValue]:
    return {
        "blob-1MiB.bin": GeneratedFile(_MIB, "blob-1"),
        "blob-3MiB.bin": GeneratedFile(3 * _MIB, "blob-3"),
        "git-256KiB.dat": HubFile(GeneratedFile(256 * _KIB, "git-256"), lfs=False),
        "small.txt": "small git file\n",
        "nested/deep/file.txt": "deep\n",
    }


@dataclass(frozen=True)
class DemoRepos:
    """Ids and the token of the :func:`demo_repos` set."""

    gguf: str = "nbmodels-demo/TinyLlama-Chat-GGUF"
    safetensors: str = "nbmodels-demo/tiny-llama-safetensors"
    gated: str = "nbmodels-demo/Gated-Chat-GGUF"
    token: str = "hf_nbmodels_demo"  # noqa: S105 - a fake token for the emulator


def demo_repos(hub: RepoHost, *, scale: float = 1.0) -> DemoRepos:
    """Add demo models (about 400 MB at ``scale=1``, all generated: nothing is held in memory):

    - a GGUF repo: ``Q4_K_M`` (48 MB), ``Q8_0`` in 2 parts (96 MB), an ``F16`` folder quant in
      2 parts (128 MB), ``mmproj-f16.gguf`` (24 MB);
    - a sharded safetensors repo (64 MB in 2 shards);
    - a gated GGUF repo (16 MB) that the demo token may read.
    """
    ids = DemoRepos()

    def mb(n: float) -> int:
        return max(64 * _KIB, int(n * scale * 1_000_000))

    hub.add_gguf_repo(
        ids.gguf,
        quants=("Q4_K_M", "Q8_0"),
        folder_quants=("F16",),
        split={"Q8_0": 2, "F16": 2},
        size=mb(48),
        sizes={"Q8_0": mb(96), "F16": mb(128)},
        sidecar_size=mb(24),
        files={"config.json": _config("TinyLlama-Chat")},
    )
    hub.add_safetensors_repo(ids.safetensors, size=mb(64), shards=2)
    hub.add_gguf_repo(ids.gated, quants=("Q4_K_M",), size=mb(16), sidecars=(), gated=True)
    hub.add_token(ids.token, [ids.gated])
    return ids
