"""nbmodels.inspect: GGUF and safetensors headers read by range (checked against llama.cpp's own
``gguf`` reader), split parts and shards combined, and the memory estimate (pure)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels.cards import ModelCard, format_count
from nbmodels.cards._gguf import GGUFFormatError, NeedMoreData, parse_gguf_header
from nbmodels.cards._memory import (
    Gpu,
    Machine,
    estimate,
    format_gb,
    kv_cache_bytes,
    parse_nvidia_smi,
    read_meminfo,
    verdict,
)
from nbmodels.cards._weights import INITIAL_READ, select_weights
from nbmodels.engine import _engine
from nbmodels.errors import NbmodelsError, NotFoundError, OfflineError
from nbmodels.testing import Fault, HubEmulator


def reference() -> Any:
    """llama.cpp's ``gguf`` package (dev extra): the reader/writer these tests compare with."""
    return pytest.importorskip("gguf", reason="needs llama.cpp's gguf package (pip install gguf)")


GGUF = "nbm-test/Tiny-GGUF"
WRITER_REPO = "nbm-test/Writer-GGUF"
TOKENS = 20_000  # a vocabulary whose header (~360 kB) is larger than the first read


def write_gguf(path: Path, *, split_max_tensors: int = 0) -> list[Path]:
    """A llama-shaped GGUF written by llama.cpp's GGUFWriter: ~8 MB of tensors behind a
    header of about 360 kB (the vocabulary). Returns the files (every part when split)."""
    gguf = reference()
    np = pytest.importorskip("numpy")
    w = gguf.GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    w.add_name("Writer Llama")
    w.add_context_length(2048)
    w.add_embedding_length(256)
    w.add_block_count(4)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tokenizer_model("llama")
    w.add_token_list([f"token{i}" for i in range(TOKENS)])
    w.add_tensor("token_embd.weight", np.zeros((4096, 1024), dtype=np.float16))
    for i in range(4):
        w.add_tensor(f"blk.{i}.attn_q.weight", np.ones((256, 256), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.ones((256,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if split_max_tensors:
        return sorted(path.parent.glob(f"{path.stem}-*-of-*.gguf"))
    return [path]


def reader_values(paths: list[Path]) -> dict[str, Any]:
    """What llama.cpp's GGUFReader says, summed over every part."""
    gguf = reference()
    readers = [gguf.GGUFReader(p) for p in paths]
    first = readers[0]

    def field(name: str) -> Any:
        return first.fields[name].contents() if name in first.fields else None

    arch = field("general.architecture")
    return {
        "architecture": arch,
        "name": field("general.name"),
        "parameters": sum(int(t.n_elements) for r in readers for t in r.tensors),
        "tensor_count": sum(len(r.tensors) for r in readers),
        "context_length": field(f"{arch}.context_length"),
        "embedding_length": field(f"{arch}.embedding_length"),
        "layers": field(f"{arch}.block_count"),
        "heads": field(f"{arch}.attention.head_count"),
        "kv_heads": field(f"{arch}.attention.head_count_kv"),
        "file_type": gguf.LlamaFileType(field("general.file_type")).name.removeprefix("MOSTLY_"),
        "chat_template": "tokenizer.chat_template" in first.fields,
        "total_size_bytes": sum(p.stat().st_size for p in paths),
    }


KEYS = (
    "architecture",
    "name",
    "parameters",
    "tensor_count",
    "context_length",
    "embedding_length",
    "layers",
    "heads",
    "kv_heads",
    "file_type",
    "chat_template",
    "total_size_bytes",
)


@dataclass(frozen=True)
class Written:
    paths: list[Path]
    expected: dict[str, Any]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Written:
    paths = write_gguf(tmp_path_factory.mktemp("single") / "Writer-F16.gguf")
    return Written(paths, reader_values(paths))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Written:
    folder = tmp_path_factory.mktemp("split")
    paths = write_gguf(folder / "Writer-F16.gguf", split_max_tensors=2)
    return Written(paths, reader_values(paths))


def served_bytes(hub: HubEmulator, name: str) -> int:
    return sum(r.bytes_sent for r in hub.requests if r.file_path == name)


# -- GGUF: remote, split, local -----------------------------------------------------------------


def test_remote_gguf_header_matches_the_gguf_reader_and_reads_a_small_fraction(
    hub: HubEmulator, single: Written
) -> None:
    (path,) = single.paths
    hub.add_repo(WRITER_REPO, {"Writer-F16.gguf": path.read_bytes()})
    hub.clear_log()

    card = nbmodels.inspect(f"{WRITER_REPO}/Writer-F16.gguf")

    assert {k: getattr(card, k) for k in KEYS} == single.expected
    size = path.stat().st_size
    sent = served_bytes(hub, "Writer-F16.gguf")
    assert sent == card.bytes_read
    assert sent < size * 0.1, (sent, size)
    ranged = [r for r in hub.requests if r.origin == "cdn"]
    assert len(ranged) >= 2  # the header is larger than the first read: it grew
    assert all(r.range and r.range.startswith("bytes=") for r in ranged)
    assert card.bytes_read > INITIAL_READ
    assert not card.local and card.commit == hub.repo(WRITER_REPO).sha


def test_split_gguf_parts_are_combined(hub: HubEmulator, split: Written) -> None:
    assert len(split.paths) == 3
    hub.add_repo(WRITER_REPO, {p.name: p.read_bytes() for p in split.paths})

    card = nbmodels.inspect(f"{WRITER_REPO}:F16")

    assert card.files == tuple(p.name for p in split.paths)
    assert {k: getattr(card, k) for k in KEYS} == split.expected


def test_local_file_reads_the_same_values_without_network(hub: HubEmulator, split: Written) -> None:
    hub.clear_log()
    card = nbmodels.inspect(split.paths[1])  # any part brings its siblings
    assert card.local
    assert {k: getattr(card, k) for k in KEYS} == split.expected
    assert hub.requests == []


def test_a_server_that_ignores_range_is_read_only_as_far_as_needed(
    hub: HubEmulator, single: Written
) -> None:
    (path,) = single.paths
    hub.add_repo(WRITER_REPO, {"Writer-F16.gguf": path.read_bytes()})
    hub.faults.add(Fault("ignore_range", times=None, origin="cdn"))
    card = nbmodels.inspect(f"{WRITER_REPO}/Writer-F16.gguf")
    assert {k: getattr(card, k) for k in KEYS} == single.expected
    assert card.bytes_read < path.stat().st_size * 0.2
    assert {r.status for r in hub.requests if r.origin == "cdn"} == {200}


def test_transient_failures_are_retried(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBMODELS_BACKOFF_BASE", "0.01")
    hub.faults.add(Fault("status", status=503, times=2, origin="cdn"))
    assert nbmodels.inspect(f"{GGUF}:Q4_K_M").file_type == "Q4_K_M"
    assert [r.status for r in hub.requests if r.origin == "cdn"] == [503, 503, 206]


def test_a_plain_url_and_a_running_event_loop(hub: HubEmulator, single: Written) -> None:
    url = hub.serve_file("model.bin", single.paths[0].read_bytes())  # sniffed, not named

    async def from_a_coroutine() -> ModelCard:
        return nbmodels.inspect(url)  # a notebook cell: the caller's loop is running

    card = asyncio.run(from_a_coroutine())
    assert {k: getattr(card, k) for k in KEYS} == single.expected
    assert card.files == ("model.bin",) and card.commit is None


def test_standard_repo_quants_match_the_gguf_reader_on_downloaded_files(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    for quant in ("Q4_K_M", "Q8_0", "F16"):
        remote = nbmodels.inspect(f"nbm-test/Tiny-GGUF:{quant}")
        job = nbmodels.download(f"nbm-test/Tiny-GGUF:{quant}")
        job.wait(30)
        paths = job.paths
        assert {k: getattr(remote, k) for k in KEYS} == reader_values(paths)
        assert remote.file_type == quant


def test_pinned_reference_on_disk_is_read_locally_with_no_request(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    nbmodels.resolve("nbm-test/Tiny-GGUF:Q4_K_M")
    hub.clear_log()
    card = nbmodels.inspect("nbm-test/Tiny-GGUF:Q4_K_M")
    assert card.local and card.file_type == "Q4_K_M"
    assert hub.requests == []


def test_offline_and_not_on_disk_is_an_offline_error_with_no_request(hub: HubEmulator) -> None:
    with pytest.raises(OfflineError):
        nbmodels.inspect("nbm-test/Tiny-GGUF:Q4_K_M", offline=True)
    assert hub.requests == []


def test_unknown_quant_lists_the_quants_that_exist(hub: HubEmulator) -> None:
    with pytest.raises(NotFoundError) as info:
        nbmodels.inspect("nbm-test/Tiny-GGUF:Q3_K_S")
    assert {"Q4_K_M", "Q8_0", "F16"} <= set(info.value.candidates)


def test_a_file_that_is_not_gguf_is_a_clear_error(hub: HubEmulator) -> None:
    hub.add_repo("nbm-test/broken", {"model.gguf": b"NOPE" + b"\0" * 5000})
    with pytest.raises(NbmodelsError, match="not a valid GGUF file"):
        nbmodels.inspect("nbm-test/broken/model.gguf")


def test_inspect_rejects_download_only_options() -> None:
    with pytest.raises(TypeError, match="include"):
        nbmodels.inspect("owner/repo", include=["*.gguf"])


# -- safetensors --------------------------------------------------------------------------------


def _safetensors_params(data: bytes) -> tuple[int, int]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    params = count = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        elements = 1
        for d in info["shape"]:
            elements *= d
        params += elements
        count += 1
    return params, count


def test_sharded_safetensors_parameters_are_summed_and_config_read(hub: HubEmulator) -> None:
    repo = hub.repo("nbm-test/tiny-sharded")
    shards = sorted(p for p in repo.files() if p.endswith(".safetensors"))
    expected = [_safetensors_params(repo.file(p).read()) for p in shards]

    card = nbmodels.inspect("nbm-test/tiny-sharded")

    assert card.format == "safetensors" and card.files == tuple(shards)
    assert card.parameters == sum(p for p, _c in expected)
    assert card.tensor_count == sum(c for _p, c in expected)
    assert (card.architecture, card.context_length, card.layers) == ("llama", 2048, 2)
    assert (card.heads, card.kv_heads, card.embedding_length) == (4, 2, 64)
    assert card.file_type == card.dtypes[0][0]


# -- the pure parser ------------------------------------------------------------------------------


def test_parser_asks_for_more_bytes_until_the_header_is_complete(single: Written) -> None:
    data = single.paths[0].read_bytes()
    with pytest.raises(NeedMoreData) as info:
        parse_gguf_header(data[:INITIAL_READ])
    assert info.value.needed > INITIAL_READ
    header = parse_gguf_header(data[: 2 * 1024 * 1024])
    assert header.version == 3 and len(header.tensors) == 6
    assert header.metadata["tokenizer.ggml.tokens"].count == TOKENS


def test_parser_rejects_what_is_not_gguf() -> None:
    with pytest.raises(GGUFFormatError):
        parse_gguf_header(b"GGML" + b"\0" * 60)
    with pytest.raises(GGUFFormatError, match="version 1"):
        parse_gguf_header(b"GGUF" + (1).to_bytes(4, "little") + b"\0" * 16)


def test_select_weights_follows_the_download_rules() -> None:
    listing = [
        "M-Q4_K_M.gguf",
        "M-Q8_0-00001-of-00002.gguf",
        "M-Q8_0-00002-of-00002.gguf",
        "mmproj-f16.gguf",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert select_weights(listing) == ("gguf", ["M-Q4_K_M.gguf"])
    assert select_weights(listing, quant="q8_0")[1] == listing[1:3]
    assert select_weights(listing, path="M-Q8_0-00002-of-00002.gguf")[1] == listing[1:3]
    assert select_weights(listing, path="model-00002-of-00002.safetensors") == (
        "safetensors",
        listing[4:],
    )
    assert select_weights(["a/model.safetensors", "model.safetensors"])[1] == ["model.safetensors"]
    with pytest.raises(NotFoundError):
        select_weights(["README.md"])


# -- memory estimate (pure) -------------------------------------------------------------------


def test_kv_cache_formula() -> None:
    # Llama-2-7B: 32 layers, 32 kv heads of 128, f16 -> 2 * 32 * 4096 * 32 * 128 * 2 = 2 GiB.
    assert kv_cache_bytes(32, 4096, 32, 128) == 2 * 1024**3
    # Grouped-query attention (8 kv heads) is a quarter of that; q8_0-ish 1 byte halves it.
    assert kv_cache_bytes(32, 4096, 8, 128) == 512 * 1024**2
    assert kv_cache_bytes(32, 4096, 8, 128, bytes_per_element=1) == 256 * 1024**2
    # Different key and value widths (e.g. MLA-style models).
    assert kv_cache_bytes(2, 10, 1, 192, 128) == 2 * 10 * (192 + 128) * 2


def test_verdicts_against_available_memory() -> None:
    assert verdict(700, 1000) == "fits"
    assert verdict(900, 1000) == "tight"
    assert verdict(1001, 1000) == "does not fit"
    assert verdict(1, None) == "unknown"


def test_estimate_uses_the_chosen_and_the_full_context() -> None:
    machine = Machine(64 * 10**9, 23 * 10**9)
    est = estimate(
        668_000_000,
        layers=22,
        kv_heads=4,
        key_dim=64,
        model_context=32768,
        machine=machine,
    )
    assert est.context == 4096  # capped at llama.cpp's default
    assert est.kv_cache_bytes == kv_cache_bytes(22, 4096, 4, 64)
    assert est.kv_cache_bytes_at_model_context == kv_cache_bytes(22, 32768, 4, 64)
    assert est.needed_bytes == 668_000_000 + est.kv_cache_bytes + est.overhead_bytes
    assert est.verdict == "fits" and est.device == "RAM"
    chosen = estimate(1000, layers=1, kv_heads=1, key_dim=1, model_context=10, context=8,
                      machine=machine)  # fmt: skip
    assert chosen.context == 8 and chosen.kv_cache_bytes == kv_cache_bytes(1, 8, 1, 1)
    no_shape = estimate(1000, machine=machine)
    assert no_shape.kv_cache_bytes is None and no_shape.needed_bytes > 1000


def test_a_gpu_is_preferred_when_the_model_fits_there() -> None:
    gpu = Gpu("Test GPU", 24 * 10**9, 20 * 10**9)
    est = estimate(10 * 10**9, machine=Machine(8 * 10**9, 4 * 10**9, (gpu,)))
    assert est.ram_verdict == "does not fit" and est.gpu_verdict == "fits"
    assert est.verdict == "fits" and est.device == "GPU"
    assert est.summary() == "fits on GPU (needs ~11 GB of 20 GB)"
    too_big = estimate(30 * 10**9, machine=Machine(64 * 10**9, 60 * 10**9, (gpu,)))
    assert too_big.device == "RAM" and too_big.summary().startswith("fits (needs ~32 GB of 60")


def test_machine_probes_parse_their_sources(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536 kB\nMemFree: 1024 kB\nMemAvailable:   32768 kB\n")
    assert read_meminfo(meminfo) == (65536 * 1024, 32768 * 1024)
    assert read_meminfo(tmp_path / "absent") == (None, None)
    gpus = parse_nvidia_smi("NVIDIA A10G, 23028, 22000\ngarbage\n")
    assert gpus == (Gpu("NVIDIA A10G", 23028 << 20, 22000 << 20),)


def test_model_card_summary_is_one_line() -> None:
    memory = estimate(
        668_000_000,
        layers=22,
        kv_heads=4,
        key_dim=64,
        model_context=2048,
        machine=Machine(32 * 10**9, 23 * 10**9),
    )
    card = ModelCard(
        ref="hf:TheBloke/TinyLlama:Q4_K_M",
        format="gguf",
        files=("tinyllama.Q4_K_M.gguf",),
        file_sizes=(668_000_000,),
        total_size_bytes=668_000_000,
        parameters=1_100_048_384,
        tensor_count=201,
        architecture="llama",
        file_type="Q4_K_M",
        context_length=2048,
        memory=memory,
    )
    assert card.summary() == (
        "llama · 1.1B params · Q4_K_M · ctx 2048 · 668.0 MB · fits (needs ~0.9 GB of 23 GB)"
    )
    data = card.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["memory"]["verdict"] == "fits"
    assert format_count(6144) == "6.1K" and format_count(70_553_706_496) == "70.6B"
    assert format_gb(897_000_000) == "0.9 GB"


def test_the_card_is_frozen() -> None:
    card = ModelCard("r", "gguf", (), (), 0, 0, 0)
    with pytest.raises(AttributeError):
        card.parameters = 1  # type: ignore[misc]
