"""Will the model fit? A rough memory estimate against this machine's RAM and GPU memory.

    needed = weights (the file size) + KV cache + overhead
    KV cache = 2 (K and V) * layers * context * kv_heads * head_dim * bytes per element

(with separate key and value widths when the model has them), f16 (2 bytes) by default, at a
chosen context (default: the model's own, capped at :data:`DEFAULT_CONTEXT`, llama.cpp's
default) and at the model's full context. The overhead stands for compute buffers and the
runtime: :data:`OVERHEAD_BASE` plus :data:`OVERHEAD_SHARE` of the weights.

Verdict against the memory available: ``fits`` when the need is at most
:data:`TIGHT_SHARE` of it, ``tight`` up to all of it, else ``does not fit``. RAM comes from
``/proc/meminfo`` (``MemAvailable``), GPU memory from ``nvidia-smi`` when it is installed.
The arithmetic (:func:`kv_cache_bytes`, :func:`estimate`, :func:`verdict`) is pure; the
machine probe (:func:`probe_machine`) is the only I/O, and tests pass a :class:`Machine`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._progress import format_bytes

__all__ = [
    "DEFAULT_CONTEXT",
    "Gpu",
    "Machine",
    "MemoryEstimate",
    "estimate",
    "format_gb",
    "kv_cache_bytes",
    "overhead_bytes",
    "probe_machine",
    "verdict",
]

DEFAULT_CONTEXT = 4096
OVERHEAD_BASE = 150_000_000
OVERHEAD_SHARE = 0.05
TIGHT_SHARE = 0.8
FITS, TIGHT, NO_FIT, UNKNOWN = "fits", "tight", "does not fit", "unknown"


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True, slots=True)
class Machine:
    """What this machine offers: RAM (total and available now) and its GPUs."""

    ram_total_bytes: int | None
    ram_available_bytes: int | None
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """The estimate for one model; byte counts are integers, verdicts are
    ``"fits"`` / ``"tight"`` / ``"does not fit"`` / ``"unknown"``."""

    weights_bytes: int
    context: int | None
    kv_cache_bytes: int | None
    model_context: int | None
    kv_cache_bytes_at_model_context: int | None
    overhead_bytes: int
    needed_bytes: int
    needed_bytes_at_model_context: int | None
    ram_available_bytes: int | None
    ram_verdict: str
    gpu_name: str | None = None
    gpu_free_bytes: int | None = None
    gpu_verdict: str | None = None

    @property
    def verdict(self) -> str:
        """The best place it goes: the GPU when it fits there, else RAM."""
        if self.gpu_verdict in (FITS, TIGHT):
            return self.gpu_verdict
        return self.ram_verdict

    @property
    def device(self) -> str:
        return "GPU" if self.gpu_verdict in (FITS, TIGHT) else "RAM"

    @property
    def available_bytes(self) -> int | None:
        return self.gpu_free_bytes if self.device == "GPU" else self.ram_available_bytes

    def breakdown(self) -> str:
        """'weights 668.0 MB + KV cache 45.1 MB + overhead 183.4 MB' (shared by the CLI and
        the notebook)."""
        parts = [f"weights {format_bytes(self.weights_bytes)}"]
        if self.kv_cache_bytes is not None:
            parts.append(f"KV cache {format_bytes(self.kv_cache_bytes)}")
        parts.append(f"overhead {format_bytes(self.overhead_bytes)}")
        return " + ".join(parts)

    def summary(self) -> str:
        """``fits (needs ~0.9 GB of 23 GB)``; ``fits on GPU (...)`` when it goes on a GPU."""
        where = " on GPU" if self.device == "GPU" else ""
        avail = self.available_bytes
        of = f" of {format_gb(avail)}" if avail is not None else ""
        return f"{self.verdict}{where} (needs ~{format_gb(self.needed_bytes)}{of})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights_bytes": self.weights_bytes,
            "context": self.context,
            "kv_cache_bytes": self.kv_cache_bytes,
            "model_context": self.model_context,
            "kv_cache_bytes_at_model_context": self.kv_cache_bytes_at_model_context,
            "overhead_bytes": self.overhead_bytes,
            "needed_bytes": self.needed_bytes,
            "needed_bytes_at_model_context": self.needed_bytes_at_model_context,
            "ram_available_bytes": self.ram_available_bytes,
            "ram_verdict": self.ram_verdict,
            "gpu_name": self.gpu_name,
            "gpu_free_bytes": self.gpu_free_bytes,
            "gpu_verdict": self.gpu_verdict,
            "verdict": self.verdict,
            "device": self.device,
        }


def format_gb(n: int) -> str:
    """Memory sizes in decimal GB: ``0.9 GB``, ``23 GB``."""
    gb = n / 1e9
    return f"{gb:.1f} GB" if gb < 10 else f"{gb:.0f} GB"


def kv_cache_bytes(
    layers: int,
    context: int,
    kv_heads: int,
    key_dim: int,
    value_dim: int | None = None,
    bytes_per_element: float = 2.0,
) -> int:
    """Bytes of the K and V caches: ``layers * context * kv_heads * (key_dim + value_dim) *
    bytes_per_element`` (``value_dim`` defaults to ``key_dim``, giving the usual factor 2)."""
    v = key_dim if value_dim is None else value_dim
    return int(layers * context * kv_heads * (key_dim + v) * bytes_per_element)


def overhead_bytes(weights_bytes: int) -> int:
    """Compute buffers and runtime, roughly."""
    return OVERHEAD_BASE + int(weights_bytes * OVERHEAD_SHARE)


def verdict(needed: int, available: int | None) -> str:
    if available is None or available <= 0:
        return UNKNOWN
    if needed <= available * TIGHT_SHARE:
        return FITS
    if needed <= available:
        return TIGHT
    return NO_FIT


def estimate(
    weights_bytes: int,
    *,
    layers: int | None = None,
    kv_heads: int | None = None,
    key_dim: int | None = None,
    value_dim: int | None = None,
    model_context: int | None = None,
    context: int | None = None,
    bytes_per_element: float = 2.0,
    machine: Machine | None = None,
) -> MemoryEstimate:
    """The estimate for a model; the KV cache counts only when the shape is known.

    ``context`` defaults to ``model_context`` capped at :data:`DEFAULT_CONTEXT`; ``machine``
    defaults to :func:`probe_machine` (pass one for a pure computation).
    """
    if machine is None:
        machine = probe_machine()
    if context is None and model_context is not None:
        context = min(model_context, DEFAULT_CONTEXT)
    shape_known = layers is not None and kv_heads is not None and key_dim is not None

    def kv(ctx: int | None) -> int | None:
        if not shape_known or ctx is None:
            return None
        assert layers is not None and kv_heads is not None and key_dim is not None
        return kv_cache_bytes(layers, ctx, kv_heads, key_dim, value_dim, bytes_per_element)

    kv_now, kv_full = kv(context), kv(model_context)
    over = overhead_bytes(weights_bytes)
    needed = weights_bytes + (kv_now or 0) + over
    needed_full = None if kv_full is None else weights_bytes + kv_full + over
    gpu = max(machine.gpus, key=lambda g: g.free_bytes, default=None)
    return MemoryEstimate(
        weights_bytes=weights_bytes,
        context=context,
        kv_cache_bytes=kv_now,
        model_context=model_context,
        kv_cache_bytes_at_model_context=kv_full,
        overhead_bytes=over,
        needed_bytes=needed,
        needed_bytes_at_model_context=needed_full,
        ram_available_bytes=machine.ram_available_bytes,
        ram_verdict=verdict(needed, machine.ram_available_bytes),
        gpu_name=None if gpu is None else gpu.name,
        gpu_free_bytes=None if gpu is None else gpu.free_bytes,
        gpu_verdict=None if gpu is None else verdict(needed, gpu.free_bytes),
    )


# -- the machine (I/O) ------------------------------------------------------------------------


def read_meminfo(path: Path = Path("/proc/meminfo")) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in bytes from a Linux ``/proc/meminfo``; None when unknown."""
    values: dict[str, int] = {}
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None, None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values.get("MemTotal"), values.get("MemAvailable", values.get("MemFree"))


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,memory.free
    --format=csv,noheader,nounits`` (MiB)."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        gpus.append(Gpu(parts[0], int(parts[1]) << 20, int(parts[2]) << 20))
    return tuple(gpus)


def _gpus() -> tuple[Gpu, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()


@functools.lru_cache(maxsize=1)
def _gpus_cached() -> tuple[Gpu, ...]:
    return _gpus()


def probe_machine() -> Machine:
    """This machine's RAM (read now) and GPUs (asked once per process)."""
    total, available = read_meminfo()
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            total = None
        available = total
    return Machine(total, available, _gpus_cached())
