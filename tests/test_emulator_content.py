"""Generated content, the GGUF / safetensors writers, the repo builders and the public surface."""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
import time
from importlib.metadata import entry_points
from typing import Any

import pytest

import nbmodels.testing
from nbmodels.testing import (
    GeneratedFile,
    HubEmulator,
    demo_repos,
    gguf_file,
    safetensors_file,
    standard_repos,
)
from nbmodels.testing._content import BytesContent, VariantContent

pytest_plugins = (
    [] if entry_points(group="pytest11", name="nbmodels") else ["nbmodels.testing._pytest_plugin"]
)

MIB = 1024 * 1024

# -- a tiny GGUF reader, written from the spec (independent of the writer) ---------------------

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS |= {11: "<q", 12: "<d"}
_GGML_SIZES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 10: (256, 84), 11: (256, 110)}
_GGML_SIZES |= {12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2), 6: (32, 22)}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode()

    def value(self, vtype: int) -> Any:
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            return [self.value(etype) for _ in range(count)]
        return self.unpack(_SCALARS[vtype])


def parse_gguf(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(metadata, tensor infos, start of tensor data) of a GGUF v3 file."""
    r = _Reader(data)
    assert data[:4] == b"GGUF"
    r.pos = 4
    assert r.unpack("<I") == 3
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
        tensors.append(
            {"name": name, "dims": dims, "type": r.unpack("<I"), "offset": r.unpack("<Q")}
        )
    align = meta.get("general.alignment", 32)
    return meta, tensors, -(-r.pos // align) * align


def check_gguf(data: bytes, size: int) -> dict[str, Any]:
    meta, tensors, start = parse_gguf(data)
    align = meta.get("general.alignment", 32)
    assert start % align == 0
    for t in tensors:
        block, nbytes = _GGML_SIZES[t["type"]]
        n = 1
        for d in t["dims"]:
            n *= d
        assert t["offset"] % align == 0 and n % block == 0
        assert start + t["offset"] + n // block * nbytes <= size
    return meta | {"_tensors": tensors}


# -- generated content -------------------------------------------------------------------------


def test_same_seed_same_bytes_and_ranges_equal_slices_of_the_full_read() -> None:
    size = 3 * MIB + 12_345  # crosses several 1 MiB blocks
    a, b, c = GeneratedFile(size, 7), GeneratedFile(size, 7), GeneratedFile(size, 8)
    full = a.read()
    assert len(full) == size and full == b.read() and full != c.read()
    assert GeneratedFile(size, "7").read(0, 4096) != full[:4096]  # str and int seeds differ
    rng = random.Random(1)
    for _ in range(50):
        start = rng.randrange(size)
        length = rng.randrange(1, 2 * MIB)
        assert a.read(start, length) == full[start : start + length]
    assert b"".join(a.iter_chunks(MIB - 10, 2 * MIB + 10, 4096)) == full[MIB - 10 : 2 * MIB + 10]
    assert a.read(size, 10) == b"" and a.read(size - 3, 10) == full[-3:]
    assert len({full[i * MIB : i * MIB + 64] for i in range(3)}) == 3  # blocks differ


def test_a_prefix_replaces_the_first_bytes() -> None:
    g = GeneratedFile(10_000, 1, prefix=b"HEADER")
    plain = GeneratedFile(10_000, 1).read()
    assert g.read(0, 10) == b"HEADER" + plain[6:10]
    assert g.read(3, 5) == b"DER" + plain[6:8]
    assert g.read()[6:] == plain[6:]
    with pytest.raises(ValueError, match="prefix"):
        GeneratedFile(3, 1, prefix=b"HEADER")


def test_digests_are_computed_once_lazily_and_match_hashlib() -> None:
    g = GeneratedFile(2 * MIB + 1, "digest")
    assert g._sha256 is None and g._git_sha1 is None
    data = g.read()
    assert g.sha256 == hashlib.sha256(data).hexdigest()
    assert g.git_sha1 == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert g._sha256 is not None
    small = BytesContent(b"hello")
    assert small.git_sha1 == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"  # `git hash-object`
    variant = VariantContent(small)
    assert variant.size == 5 and all(x != y for x, y in zip(variant.read(), b"hello", strict=True))


def test_multi_gigabyte_files_cost_nothing_until_read() -> None:
    start = time.monotonic()
    huge = GeneratedFile(8 * 1024**3, "huge")
    tail = huge.read(huge.size - 1000, 1000)
    assert len(tail) == 1000 and huge.read(huge.size - 1000) == tail
    assert time.monotonic() - start < 1.0


# -- file formats ------------------------------------------------------------------------------


def test_gguf_files_have_a_valid_v3_header_and_aligned_tensors() -> None:
    g = gguf_file(100_000, quant="Q4_K_M", name="Tiny")
    meta = check_gguf(g.read(0, 64 * 1024), g.size)
    assert g.size == 100_000
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "Tiny"
    assert meta["general.file_type"] == 15
    for key in (
        "llama.context_length",
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "tokenizer.chat_template",
    ):
        assert meta[key]
    assert "split.count" not in meta
    assert gguf_file(10, quant="Q8_0").size > 1000  # raised to hold the header and tensors


def test_gguf_split_parts_carry_split_keys() -> None:
    parts = [gguf_file(50_000, quant="Q8_0", split_no=i, split_count=3) for i in range(3)]
    metas = [check_gguf(p.read(0, 8192), p.size) for p in parts]
    assert [m["split.no"] for m in metas] == [0, 1, 2]
    assert {m["split.count"] for m in metas} == {3}
    total = {m["split.tensors.count"] for m in metas}
    names = [t["name"] for m in metas for t in m["_tensors"]]
    assert total == {len(names)} and len(set(names)) == len(names)
    assert metas[0]["general.file_type"] == 7 and "general.name" not in metas[1]


def test_safetensors_header_offsets_tile_the_data_exactly() -> None:
    for size in (64, 1000, 256 * 1024 + 3):
        st = safetensors_file(size, seed=size)
        data = st.read()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        assert n % 8 == 0 and st.size == max(size, 8 + n)
        spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
        position = 0
        for begin, end in spans:
            assert begin == position
            position = end
        assert position == st.size - 8 - n


def test_gguf_repo_names_follow_the_llama_cpp_conventions(hf_hub: HubEmulator) -> None:
    repo = hf_hub.repo("nbm-test/Tiny-GGUF")
    split_re = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
    names = sorted(p for p in repo.files() if p.endswith(".gguf"))
    assert names == [
        "Tiny-F16/Tiny-F16-00001-of-00002.gguf",
        "Tiny-F16/Tiny-F16-00002-of-00002.gguf",
        "Tiny-Q4_K_M.gguf",
        "Tiny-Q8_0-00001-of-00003.gguf",
        "Tiny-Q8_0-00002-of-00003.gguf",
        "Tiny-Q8_0-00003-of-00003.gguf",
        "mmproj-f16.gguf",
    ]
    for name in names:
        entry = repo.file(name)
        meta = check_gguf(entry.read(0, 8192), entry.size)
        if m := split_re.search(name):
            assert meta["split.no"] == int(m[1]) - 1 and meta["split.count"] == int(m[2])
    assert (
        check_gguf(repo.file("mmproj-f16.gguf").read(0, 8192), 10**9)["general.architecture"]
        == "clip"
    )
    info = repo.info
    assert info["library_name"] == "gguf" and "gguf" in info


def test_sharded_safetensors_repo_has_a_consistent_index(hf_hub: HubEmulator) -> None:
    repo = hf_hub.repo("nbm-test/tiny-sharded")
    index = json.loads(repo.file("model.safetensors.index.json").read())
    shards = sorted(p for p in repo.files() if p.endswith(".safetensors"))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert set(index["weight_map"].values()) == set(shards)
    for shard in shards:
        data = repo.file(shard).read()
        (n,) = struct.unpack("<Q", data[:8])
        names = set(json.loads(data[8 : 8 + n])) - {"__metadata__"}
        assert names == {k for k, v in index["weight_map"].items() if v == shard}
    config = json.loads(repo.file("config.json").read())
    assert config["model_type"] == "llama"
    json.loads(repo.file("tokenizer.json").read())


# -- repo sets and the public surface ----------------------------------------------------------


def test_standard_repos_are_small_and_demo_repos_are_generated_not_held() -> None:
    hub = HubEmulator()
    ids = standard_repos(hub)
    sizes = [e.size for r in hub.repos for e in r.files().values()]
    assert sum(sizes) < 8 * MIB
    assert hub.standard == ids and {r.repo_type for r in hub.repos} == {"model", "dataset", "space"}
    demo = demo_repos(hub)
    big = [e for e in hub.repo(demo.gguf).files().values() if e.size > MIB]
    assert sum(e.size for e in big) > 250 * 10**6
    assert all(isinstance(e.content, GeneratedFile) and e.content._sha256 is None for e in big)
    assert hub.repo(demo.gated).gated == "manual"
    hub.close()


def test_the_public_surface_is_sorted_and_importable() -> None:
    names = nbmodels.testing.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(nbmodels.testing, name) is not None
    with pytest.raises(AttributeError):
        _ = nbmodels.testing.not_a_name  # type: ignore[attr-defined]
