"""What is in a model without downloading it: GGUF and safetensors headers, memory fit."""

from ._card import ModelCard, format_count
from ._inspect import inspect
from ._memory import MemoryEstimate, format_gb

__all__ = ["MemoryEstimate", "ModelCard", "format_count", "format_gb", "inspect"]
