"""The texts every front end shows (:mod:`nbmodels._present`), from tables: pure functions of
snapshots, errors and model cards, no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from nbmodels._present import (
    badge,
    card_lines,
    card_rows,
    card_summary,
    card_title,
    error_line,
    file_text,
    job_label,
    job_text,
    one_line,
    plain_text,
    progress_line,
    reason,
    status_label,
)
from nbmodels._progress import FileProgress, JobSnapshot, Progress, RetryNotice
from nbmodels.cards._inspect import ModelCard
from nbmodels.cards._memory import MemoryEstimate
from nbmodels.errors import NetworkError, NotFoundError, OfflineError, Option, RefError

MB = 1_000_000
HALF = Progress(downloaded_bytes=2 * MB, total_bytes=4 * MB, bytes_per_second=MB, eta_seconds=2)
DONE = Progress(downloaded_bytes=4 * MB, total_bytes=4 * MB)
WAITING = Progress(retry=RetryNotice("connection refused", 1, 4.0))
MOVING = "2.0 MB / 4.0 MB · 50% · 1.0 MB/s · ETA 0:02"
RETRYING = "0 B · retrying in 4 s: connection refused"


def snap(status: str, progress: Progress = HALF, **kw: object) -> JobSnapshot:
    ref = str(kw.pop("ref", "https://h.test/models/m.gguf?sig=x"))
    return JobSnapshot("j1", ref, status, progress, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "label"),
    [
        ("downloading", "downloading"),
        ("already_downloaded", "already downloaded"),
        ("interrupted", "interrupted"),
    ],
)
def test_status_labels(status: str, label: str) -> None:
    assert status_label(status) == label


@pytest.mark.parametrize(
    ("ref", "label"),
    [
        ("https://h.test/models/tiny%20q4.gguf?sig=secret", "tiny q4.gguf"),
        ("https://h.test/", "https://h.test/"),
        ("hf:owner/repo:Q4_K_M", "hf:owner/repo:Q4_K_M"),
        ("owner/repo file.gguf", "owner/repo file.gguf"),
    ],
)
def test_job_labels(ref: str, label: str) -> None:
    assert job_label(ref) == label


FORMS = RefError("Bad reference 'x'.", hint="Accepted forms:\n  owner/repo\n  https://...")
SPACE = NotFoundError("No room.", hint=("Choose another disk with ", Option("dir"), "."))


@pytest.mark.parametrize(
    ("exc", "more", "typed", "whole"),
    [
        (FORMS, "See.", "RefError: Bad reference 'x'. See.", "Bad reference 'x'. See."),
        (FORMS, "", "RefError: Bad reference 'x'.", "Bad reference 'x'."),
        (
            SPACE,
            "",
            "NotFoundError: No room. Choose another disk with dir=.",
            "No room. Choose another disk with --dir.",
        ),
        (NetworkError("Gave up.", hint="Retry later."), "", "NetworkError: Gave up. Retry later.",
         "Gave up. Retry later."),
        (ValueError("a\nb"), "", "ValueError: a", "a b"),
        (OfflineError(""), "", "OfflineError", "OfflineError"),
        (KeyError(), "", "KeyError", "KeyError"),
    ],
)  # fmt: skip
def test_errors_on_one_line(exc: BaseException, more: str, typed: str, whole: str) -> None:
    assert one_line(exc, more=more) == typed  # the magic and the widgets (api style by default)
    assert error_line(exc, more=more) == whole  # the CLI (flags style by default)


@pytest.mark.parametrize(
    ("snapshot", "text"),
    [
        (snap("downloading"), f"m.gguf — downloading · {MOVING}"),
        (snap("paused"), "m.gguf — paused · 2.0 MB / 4.0 MB · 50%"),
        (snap("completed", DONE, path="/p"), "m.gguf — completed · 4.0 MB / 4.0 MB · 100% · /p"),
        (snap("failed", error="Not found: m.gguf.\nMore."), "m.gguf — failed: Not found: m.gguf."),
        (snap("downloading", WAITING), f"m.gguf — downloading · {RETRYING}"),
    ],
)  # fmt: skip
def test_plain_text(snapshot: JobSnapshot, text: str) -> None:
    assert plain_text(snapshot) == text


def test_plain_text_in_a_listing_cuts_the_reason_and_drops_the_hint() -> None:
    failed = snap("failed", error="A fact " + "x" * 80 + ". Do this.", error_hint="Do this.")
    assert plain_text(failed, reason_width=20) == "m.gguf — failed: A fact xxxxxxxxxxxx…"
    assert reason(failed, None) == "A fact " + "x" * 80 + "."


@pytest.mark.parametrize(
    ("snaps", "line"),
    [
        ([snap("downloading")], f"m.gguf — downloading · {MOVING}"),
        (
            [snap("downloading"), snap("completed", DONE)],
            "2 downloads (1 done): 6.0 MB / 8.0 MB · 75% · 1.0 MB/s · ETA 0:02",
        ),
        ([snap("queued", Progress()), snap("paused")], "2 downloads (0 done): 2.0 MB"),
        ([snap("downloading", WAITING)] * 2, f"2 downloads (0 done): {RETRYING}"),
    ],
)  # fmt: skip
def test_progress_line(snaps: list[JobSnapshot], line: str) -> None:
    assert progress_line(snaps) == line


@pytest.mark.parametrize(
    ("f", "label", "text"),
    [
        (FileProgress("a.gguf", "downloading", HALF), False, MOVING),
        (FileProgress("a.gguf", "downloading", HALF), True, f"downloading · {MOVING}"),
        (
            FileProgress("a.gguf", "already_downloaded", DONE),
            False,
            "already downloaded · 4.0 MB / 4.0 MB · 100%",
        ),
    ],
)  # fmt: skip
def test_cli_file_rows(f: FileProgress, label: bool, text: str) -> None:
    assert file_text(f, label=label) == text


@pytest.mark.parametrize(
    ("snapshot", "text"),
    [
        (snap("resolving", Progress(), ref="hf:o/r:Q4_K_M"), "hf:o/r:Q4_K_M · resolving"),
        (snap("downloading", ref="hf:o/r:Q4_K_M"), f"hf:o/r:Q4_K_M · downloading · {MOVING}"),
        (snap("downloading", WAITING, ref="u"), f"u · downloading · {RETRYING}"),
    ],
)  # fmt: skip
def test_cli_job_rows(snapshot: JobSnapshot, text: str) -> None:
    assert job_text(snapshot) == text


# -- model cards ----------------------------------------------------------------------------------

MEMORY = MemoryEstimate(
    weights_bytes=668 * MB,
    context=2048,
    kv_cache_bytes=45 * MB,
    model_context=8192,
    kv_cache_bytes_at_model_context=180 * MB,
    overhead_bytes=183 * MB,
    needed_bytes=896 * MB,
    needed_bytes_at_model_context=1_031 * MB,
    ram_available_bytes=23_000 * MB,
    ram_verdict="fits",
    gpu_name="Tiny GPU",
    gpu_free_bytes=500 * MB,
    gpu_verdict="does not fit",
)
CARD = ModelCard(
    "hf:owner/Model-GGUF:Q4_K_M",
    "gguf",
    ("m-00001-of-00002.gguf", "m-00002-of-00002.gguf"),
    (400 * MB, 268 * MB),
    668 * MB,
    1_100_048_384,
    201,
    architecture="llama",
    name="Model",
    file_type="Q4_K_M",
    context_length=8192,
    embedding_length=2048,
    layers=22,
    heads=32,
    kv_heads=4,
    chat_template=True,
    dtypes=(("Q4_K", 1_000_000_000), ("F32", 100_048_384)),
    commit="c" * 40,
    bytes_read=2 * MB,
    memory=MEMORY,
)
MEMORY_ROW = (
    "memory",
    "fits (needs ~0.9 GB of 23 GB) at ctx 2048: "
    "weights 668.0 MB + KV cache 45.0 MB + overhead 183.0 MB",
)
SHARED_ROWS = [
    ("architecture", "llama"),
    ("parameters", "1,100,048,384 (1.1B)"),
    ("quant", "Q4_K_M"),
    ("context", "8192"),
    ("layers / heads", "22 layers, 32 heads (4 KV)"),
    ("tensors", "201"),
    ("size", "668.0 MB in 2 gguf files"),
    ("chat template", "yes"),
    MEMORY_ROW,
]
FULL_ROWS = [
    ("format", "gguf, 2 file(s)"),
    ("read", "2.0 MB of it, remotely"),
    ("files", "m-00001-of-00002.gguf (400.0 MB), m-00002-of-00002.gguf (268.0 MB)"),
    ("name", "Model"),
    ("architecture", "llama"),
    ("parameters", "1,100,048,384 (1.1B)"),
    ("quant", "Q4_K_M"),
    ("tensor types", "Q4_K 1.0B, F32 100M"),
    ("context", "8192"),
    ("embedding", "2048"),
    ("layers / heads", "22 layers, 32 heads (4 KV)"),
    ("tensors", "201"),
    ("size", "668.0 MB in 2 gguf files"),
    ("chat template", "yes"),
    ("commit", "c" * 40),
    MEMORY_ROW,
    ("", "~1.0 GB at the full context (8192)"),
    ("", "RAM available 23 GB: fits"),
    ("", "GPU Tiny GPU, 0.5 GB free: does not fit"),
]


def test_card_rows_one_set_of_labels_for_every_front_end() -> None:
    assert card_rows(CARD) == SHARED_ROWS  # %model_download --inspect, the widget's tooltip
    assert card_rows(CARD, full=True) == FULL_ROWS  # nbmodels inspect
    shared = {key for key, _ in SHARED_ROWS}
    assert [row for row in FULL_ROWS if row[0] in shared] == SHARED_ROWS


@pytest.mark.parametrize(
    ("changes", "row", "value"),
    [
        ({"kv_heads": 32}, "layers / heads", "22 layers, 32 heads"),
        ({"layers": None, "heads": None, "kv_heads": None}, "layers / heads", "- layers, - heads"),
        ({"format": "safetensors", "file_type": "F16"}, "dtype", "F16"),
        ({"chat_template": None}, "chat template", "unknown"),
        ({"context_length": None}, "context", "-"),
        ({"files": ("m.gguf",), "file_sizes": (668 * MB,)}, "size", "668.0 MB in 1 gguf file"),
    ],
)
def test_card_row_values(changes: dict[str, object], row: str, value: str) -> None:
    card = dataclasses.replace(CARD, **changes)  # type: ignore[arg-type]
    assert dict(card_rows(card))[row] == value


def test_card_lines_title_and_summary() -> None:
    lines = card_lines(CARD)
    assert lines[2] == "  quant           Q4_K_M"
    assert lines[-2] == "  chat template   yes"
    assert [line[:18] for line in card_lines(CARD, full=True)][-3:] == ["  " + " " * 16] * 3
    assert card_title(CARD).split("\n")[4] == "layers / heads: 22 layers, 32 heads (4 KV)"
    text, fit = card_summary(CARD)
    assert (text, fit) == (
        "llama · 1.1B params · Q4_K_M · ctx 8192 · 668.0 MB",
        "fits (needs ~0.9 GB of 23 GB)",
    )
    assert card_summary(dataclasses.replace(CARD, memory=None)) == (text, "")


@pytest.mark.parametrize(
    ("status", "progress", "expected"),
    [
        ("downloading", Progress(1, 10), ("downloading", "downloading")),
        ("downloading", Progress(1, 10, stalled=True), ("stalled", "stalled")),
        (
            "downloading",
            Progress(0, None, stalled=True, retry=RetryNotice("connection refused", 1, 4.0)),
            ("retrying", "retrying"),
        ),
        ("paused", Progress(1, 10, stalled=True), ("paused", "paused")),
        ("already_downloaded", Progress(10, 10), ("already downloaded", "already_downloaded")),
    ],
)
def test_the_badge_says_retrying_or_stalled_only_while_downloading(
    status: str, progress: Progress, expected: tuple[str, str]
) -> None:
    assert badge(status, progress) == expected
