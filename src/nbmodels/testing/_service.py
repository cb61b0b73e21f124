"""The repos and files that the HTTP service's documented examples name (issue 14).

The LM Studio, model-download and ARW documents (and ``docs/api.md``) show requests for
``qwen/qwen3-4b-2507``, ``resnet50`` at ``v1.0``, ``bert-large`` at ``v3.1``... and for files on
``storage.example.com``. :func:`service_repos` adds repos with those names to an emulator and
serves the files on its CDN origin, so every example runs as written against 127.0.0.1 with
only the host (and the external URLs, through :attr:`ServiceRepos.urls`) swapped.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._content import GeneratedFile
from ._gguf import gguf_file

if TYPE_CHECKING:
    from ._emulator import HubEmulator

__all__ = ["ServiceRepos", "service_repos"]

_KIB = 1024

#: Hub repos of the examples: id -> the tags it has (each tag is a commit of its own).
_VERSIONED = {
    "resnet50": ("v1.0",),
    "bert-large": ("v3.1",),
    "bert-base": ("v1.5", "v2.1"),
    "resnet18": ("v1.0",),
    "mobilenet": ("v2.0",),
    "efficientnet": ("v1.5",),
}

#: The examples' external URLs -> the path of the file on the emulator's CDN origin.
_FILES = {
    "https://models.example.com/custom-model-v2.pth": "custom-model-v2.pth",
    "https://storage.example.com/models/classifier-v2.1.pth": "models/classifier-v2.1.pth",
    "https://storage.example.com/models/transformer-v3.0.tar.gz": "models/transformer-v3.0.tar.gz",
    "https://example.com/qwen.gguf": "qwen.gguf",
}


@dataclass(frozen=True)
class ServiceRepos:
    """What :func:`service_repos` added.

    - ``lmstudio``: ``qwen/qwen3-4b-2507``, a GGUF repo (``Q4_K_M``, the default quant, and
      ``Q8_0``) with ``config.json`` and ``README.md``.
    - ``versioned``: one-segment repos (``resnet50``, ``bert-large``, ``bert-base``, ...) with a
      small safetensors model; each tag (``v1.0``...) is its own commit, and ``main`` moved on
      after the last one, so a request that ignores the version gets other bytes.
    - ``urls``: each external URL of the examples -> the emulator URL serving that file
      (``classifier-v2.1.pth``, ``custom-model-v2.pth``, ``transformer-v3.0.tar.gz`` (a real
      gzip tar archive with a ``transformer-v3.0/`` folder), ``qwen.gguf``).
    """

    lmstudio: str = "qwen/qwen3-4b-2507"
    versioned: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(_VERSIONED))
    urls: dict[str, str] = field(default_factory=dict)

    def swap(self, text: str) -> str:
        """``text`` with every external example URL replaced by its emulator URL."""
        for external, local in self.urls.items():
            text = text.replace(external, local)
        return text


def transformer_archive() -> bytes:
    """``transformer-v3.0.tar.gz``: a config, a vocabulary and weights in one folder."""
    members = {
        "transformer-v3.0/config.json": json.dumps({"model_type": "transformer"}).encode(),
        "transformer-v3.0/vocab.txt": b"[PAD]\n[UNK]\nhello\nworld\n",
        "transformer-v3.0/model.bin": GeneratedFile(64 * _KIB, "transformer-v3.0").read(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def service_repos(hub: HubEmulator) -> ServiceRepos:
    """Add the examples' repos to ``hub`` and serve their files (about 2 MB in all)."""
    hub.add_gguf_repo(
        ServiceRepos.lmstudio,
        quants=("Q4_K_M", "Q8_0"),
        size=192 * _KIB,
        sidecars=(),
        files={"config.json": json.dumps({"model_type": "qwen3"}).encode()},
    )
    for repo_id, tags in _VERSIONED.items():
        repo = hub.add_safetensors_repo(repo_id, size=64 * _KIB, seed=repo_id)
        for n, tag in enumerate(tags):
            if n:
                repo.commit({"README.md": f"# {repo_id}\n\nRelease {tag}.\n"})
            repo.create_tag(tag)
        repo.commit({"README.md": f"# {repo_id}\n\nWork after {tags[-1]}.\n"})
    urls = {}
    for external, path in _FILES.items():
        if path.endswith(".tar.gz"):
            content: bytes | GeneratedFile = transformer_archive()
        elif path.endswith(".gguf"):
            content = gguf_file(160 * _KIB, seed=path, name="Qwen2.5 Coder 7B")
        else:
            content = GeneratedFile(96 * _KIB, seed=path)
        urls[external] = hub.serve_file(path, content)
    return ServiceRepos(urls=urls)
