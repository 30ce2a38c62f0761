"""Whether bfloat16 pays on a device: what the ``bf16: auto`` setting of the training configs means.

bf16 halves the bytes moved and, where the hardware has bf16 matrix units, doubles the matmul rate. Where it
does not, PyTorch emulates it and bf16 is far slower than float32: on a 2-core AMD EPYC with AVX2 only, a
512 x 576 x 1536 linear ran at 14 GFLOP/s in bf16 (autocast 13) against 120 in float32, and the demo's reward
model cache at ~2.3 rows/s instead of ~50. So the demo configs ask for ``bf16: auto``.

oneDNN reports bf16 support on any AVX512 core, but without the AVX512-BF16 dot product (or AMX) it converts to
float32 in registers and is slower than float32 itself: on a 2-core Intel Xeon with AVX512 but no AVX512-BF16, the
same linear ran at 60 GFLOP/s in bf16 (autocast 57) against 192 in float32, and one SmolLM2 forward and backward
of 16 x 160 tokens took 47 s under bf16 autocast against 22 s in float32. So native means the instructions, not
oneDNN's support.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matmuls are not emulated: a CUDA device that supports bf16, or a CPU with the AVX512-BF16
    dot product or AMX tiles. False on AVX2-only CPUs and on AVX512 without BF16 (emulated there, see above)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
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
