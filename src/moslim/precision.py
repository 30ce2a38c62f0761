"""Whether bfloat16 pays on a device: what the ``bf16: auto`` setting of the training configs means.

bf16 halves the bytes moved and, where the hardware has bf16 matrix units, doubles the matmul rate. Where it
does not, PyTorch emulates it and bf16 is far slower than float32: on a 2-core AMD EPYC with AVX2 only, a
512 x 576 x 1536 linear ran at 14 GFLOP/s in bf16 (autocast 13) against 120 in float32, and the demo's reward
model cache at ~2.3 rows/s instead of ~50. So the demo configs ask for ``bf16: auto``.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matmuls are not emulated: a CUDA device that supports bf16, or a CPU on which oneDNN has
    bf16 kernels (AVX512 with BF16 or AMX; AVX512 core converts in registers). False on AVX2-only CPUs."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_bf16(setting: bool | str, device: str | torch.device, where: str = "bf16") -> bool:
    """A config's ``bf16`` value (true, false or "auto") as a bool for ``device``; "auto" = :func:`native_bf16`."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        raise ValueError(f"{where}: expected true, false or auto, got {setting!r}")
    native = native_bf16(device)
    log.info("%s: auto -> %s (%s %s native bf16 matmuls)", where, str(native).lower(), torch.device(device).type,
             "has" if native else "lacks")
    return native
