"""Rewarded Soups: weight interpolation ``theta = sum_i lambda_i theta_i`` of policies fine-tuned from one base.

Works on full models (``*.safetensors`` next to ``config.json``) and on LoRA adapters
(``adapter_model.safetensors`` next to ``adapter_config.json``): for adapters the A and B matrices are
interpolated separately, as the Rewarded Soups paper does; the frozen base is shared. Only safetensors are
read and written. With one lambda equal to 1 the result is that policy's tensors exactly (no rounding: the
other terms are skipped, not multiplied by 0).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from moslim.paths import atomic_folder

ADAPTER = "adapter_config.json"


def weight_files(folder: Path) -> list[str]:
    """The safetensors file names of a policy folder (an adapter's, or a full model's shards)."""
    folder = Path(folder)
    if (folder / ADAPTER).exists():
        names = ["adapter_model.safetensors"]
    else:
        names = sorted(p.name for p in folder.glob("*.safetensors"))
    if not names or not all((folder / n).exists() for n in names):
        raise ValueError(f"{folder}: no safetensors weights (expected model*.safetensors or "
                         f"adapter_model.safetensors); Rewarded Soups reads safetensors only")
    return names


def check_soup(folders: Sequence[Path], lambdas: Sequence[float]) -> list[str]:
    """The shared weight file names, when the folders are the same kind of policy and lambdas fit, else ValueError."""
    if len(folders) < 1 or len(folders) != len(lambdas):
        raise ValueError(f"got {len(folders)} policies and {len(lambdas)} lambdas; expected one lambda per policy")
    if any(x < 0 for x in lambdas) or abs(sum(lambdas) - 1) > 1e-6:
        raise ValueError(f"lambdas {list(lambdas)}: expected non-negative coefficients summing to 1")
    names = weight_files(folders[0])
    adapters = {(Path(f) / ADAPTER).exists() for f in folders}
    if len(adapters) != 1:
        raise ValueError(f"policies {[str(f) for f in folders]}: mix of LoRA adapters and full models; "
                         "interpolate the same kind")
    for folder in folders[1:]:
        if weight_files(folder) != names:
            raise ValueError(f"{folder}: weight files {weight_files(folder)} differ from {folders[0]}'s {names}")
    return names


def soup_tensors(state_dicts: Sequence[dict[str, torch.Tensor]], lambdas: Sequence[float],
                 where: str = "") -> dict[str, torch.Tensor]:
    """``sum_i lambda_i state_i`` tensor by tensor (fp32 accumulation, cast back to each tensor's dtype)."""
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if set(sd) != set(keys):
            diff = sorted(set(sd) ^ set(keys))[:3]
            raise ValueError(f"{where}policy {i} has other tensors than policy 0 (e.g. {diff}): not one architecture")
    nonzero = [(x, sd) for x, sd in zip(lambdas, state_dicts) if x > 0]
    out = {}
    for key in keys:
        shapes = {tuple(sd[key].shape) for sd in state_dicts}
        if len(shapes) != 1:
            raise ValueError(f"{where}tensor {key!r} has shapes {sorted(shapes)} across the policies")
        if len(nonzero) == 1:  # a corner: that policy's tensor, bit for bit
            out[key] = nonzero[0][1][key].clone()
            continue
        acc = sum(x * sd[key].float() for x, sd in nonzero)
        out[key] = acc.to(state_dicts[0][key].dtype)
    return out


def interpolate(folders: Sequence[str | Path], lambdas: Sequence[float], out: str | Path) -> Path:
    """Write the soup of ``folders`` with ``lambdas`` to ``out`` (atomically): the interpolated safetensors plus
    the first policy's other files (config, tokenizer, objectives, prompt template). Returns ``out``."""
    folders = [Path(f) for f in folders]
    names = check_soup(folders, lambdas)
    with atomic_folder(out) as tmp:
        for item in folders[0].iterdir():
            if item.is_file() and not item.name.endswith((".safetensors", ".bin", ".pt", ".pth")):
                shutil.copy2(item, tmp / item.name)
        for name in names:
            tensors = soup_tensors([load_file(f / name) for f in folders], lambdas, where=f"{name}: ")
            save_file(tensors, tmp / name, metadata={"format": "pt"})
        (tmp / "soup.json").write_text(json.dumps({"policies": [str(f) for f in folders],
                                                   "lambdas": list(lambdas)}, indent=1), encoding="utf-8")
    return Path(out)
