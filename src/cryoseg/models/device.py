"""Choosing the torch device and floating-point precision for model inference.

Policy (one place):
- device: "auto" / None picks cuda, then mps, then cpu; "cpu", "cuda", "cuda:1", "mps" are taken as given
  and fail with `InputError` when that device is not available (never a silent switch to another device).
- precision: None / "auto" is float32 everywhere. "fp16"/"bf16" are honoured on a GPU (cuda, or mps for fp16)
  and refused on the CPU with `InputError`: half-precision matmuls on CPU are slow and lossy, and silently
  running in another precision than the one asked for would make cached embeddings lie about what they are.

torch is imported inside functions: checking a device or precision name must not cost a torch import.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

_DTYPE_NAMES = {
    "fp32": "float32", "float32": "float32", "float": "float32", "32": "float32",
    "fp16": "float16", "float16": "float16", "half": "float16", "16": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
}


_DEVICE_NAME = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def parse_device(device: Any) -> str | None:
    """Check a device name without importing torch: None for automatic, else "cpu", "cuda", "cuda:N" or "mps"."""
    if device is None:
        return None
    if not isinstance(device, str):
        return str(device)  # a torch.device; resolve_device checks it
    name = device.strip().lower()
    if name in ("", "auto"):
        return None
    if not _DEVICE_NAME.match(name):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return name


def parse_precision(dtype: Any) -> str | None:
    """Check a precision name without importing torch: None for the default, else "float32", "float16" or
    "bfloat16"."""
    if dtype is None or not isinstance(dtype, str):
        return None if dtype is None else str(dtype).replace("torch.", "")
    text = dtype.strip().lower()
    if text in ("", "auto"):
        return None
    name = _DTYPE_NAMES.get(text)
    if name is None:
        raise InputError(f"unknown precision {dtype!r}; use fp32, fp16 or bf16")
    return name


def resolve_device(device: Any = None) -> torch.device:
    """Return the torch device to run on: `device` if given and available, else the best available one."""
    import torch

    if isinstance(device, str):
        device = parse_device(device)
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"device {device!r} requested but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    """Return the inference dtype for `device` (float32 by default). Half precision on the CPU is refused."""
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() in ("", "auto")):
        return torch.float32
    resolved = dtype if isinstance(dtype, torch.dtype) else getattr(torch, parse_precision(dtype) or "float32")
    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"unsupported precision {dtype!r}; use fp32, fp16 or bf16")
    if resolved != torch.float32 and device.type == "cpu":
        raise InputError(f"precision {dtype!r} needs a GPU (cuda or mps); on the CPU use fp32")
    if resolved == torch.bfloat16 and device.type == "mps":
        raise InputError("precision bf16 is not supported on mps; use fp16 or fp32")
    return resolved


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32 etc.; used in signatures."""
    return str(dtype).replace("torch.", "")
