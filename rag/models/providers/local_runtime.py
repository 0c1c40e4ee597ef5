"""Where in-process models run and in which number format: the device (cuda, mps, cpu) and the dtype ("auto" is
bf16 where the hardware computes it natively, else float32). Shared by the in-process chat model and reranker."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def auto_device(torch: Any) -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 / AMX on x86, BF16 on Arm)."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None:
        try:
            # oneDNN also reports plain AVX512 as "supported" (emulated); require a native flag as well below.
            if not check():
                return False
        except RuntimeError:
            pass
    if "AMX" in torch.backends.cpu.get_cpu_capability().upper():
        return True
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(torch: Any, dtype: str, device: str) -> Any:
    """Map the dtype setting to a torch dtype; "auto" is bf16 where the hardware has it, else float32."""
    if dtype != "auto":
        return getattr(torch, dtype)
    kind = str(device).split(":")[0]
    if kind == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
