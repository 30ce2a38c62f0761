"""Rewarded Soups' interpolation: exact at the corners, linear in between, for full weights and LoRA adapters."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from moslim.baselines.soups import interpolate


def _perturbed_copy(src, dst, seed):
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    gen = torch.Generator().manual_seed(seed)
    save_file({k: v + torch.randn(v.shape, generator=gen) for k, v in tensors.items()}, dst / "model.safetensors",
              metadata={"format": "pt"})
    return dst


@pytest.fixture
def two_policies(tmp_path, tiny_causal_lm_dir):
    return [_perturbed_copy(tiny_causal_lm_dir, tmp_path / f"p{i}", seed=i) for i in range(2)]


def test_corners_give_back_each_policys_weights_exactly(tmp_path, two_policies):
    for i, lambdas in enumerate(([1.0, 0.0], [0.0, 1.0])):
        soup = interpolate(two_policies, lambdas, tmp_path / f"corner{i}")
        got, want = load_file(soup / "model.safetensors"), load_file(two_policies[i] / "model.safetensors")
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
        assert (soup / "config.json").exists() and (soup / "tokenizer.json").exists()


def test_middle_is_the_weighted_sum(tmp_path, two_policies):
    soup = load_file(interpolate(two_policies, [0.3, 0.7], tmp_path / "mid") / "model.safetensors")
    a, b = (load_file(p / "model.safetensors") for p in two_policies)
    for key in a:
        torch.testing.assert_close(soup[key], 0.3 * a[key] + 0.7 * b[key])


def test_soup_loads_as_a_policy(tmp_path, two_policies):
    from moslim.policy.generate import load_policy

    model, _, _ = load_policy(interpolate(two_policies, [0.5, 0.5], tmp_path / "half"))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_lora_adapters_interpolate_and_corners_are_exact(tmp_path, tiny_causal_lm_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for i in range(2):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
        # init_lora_weights=False: random A and B, so the two adapters differ
        model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                init_lora_weights=False))
        model.save_pretrained(tmp_path / f"a{i}")
        folders.append(tmp_path / f"a{i}")
    corner = interpolate(folders, [0.0, 1.0], tmp_path / "corner")
    got, want = load_file(corner / "adapter_model.safetensors"), load_file(folders[1] / "adapter_model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    mid = load_file(interpolate(folders, [0.5, 0.5], tmp_path / "mid") / "adapter_model.safetensors")
    a = load_file(folders[0] / "adapter_model.safetensors")
    key = next(iter(a))
    torch.testing.assert_close(mid[key], 0.5 * a[key] + 0.5 * want[key])
    assert (corner / "adapter_config.json").exists()


def test_mixing_an_adapter_with_a_full_model_is_an_error(tmp_path, two_policies):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    save_file({"x": torch.zeros(1)}, tmp_path / "adapter" / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="mix of LoRA adapters and full models"):
        interpolate([two_policies[0], tmp_path / "adapter"], [0.5, 0.5], tmp_path / "bad")


def test_lambdas_must_be_a_convex_combination(tmp_path, two_policies):
    with pytest.raises(ValueError, match=r"lambdas \[0.5, 0.6\]: expected non-negative coefficients summing to 1"):
        interpolate(two_policies, [0.5, 0.6], tmp_path / "bad")


def test_a_folder_without_safetensors_is_refused(tmp_path, two_policies):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no safetensors weights"):
        interpolate([two_policies[0], tmp_path / "empty"], [0.5, 0.5], tmp_path / "bad")
