"""`bf16: auto`: bf16 autocast only where the device runs bf16 matmuls natively."""

import pytest
import torch

from moslim import precision
from moslim.config import from_dict
from moslim.policy.fast import generation_dtype
from moslim.policy.train import trl_args
from moslim.reward.config import TrainSection
from moslim.reward.train import training_arguments


def test_cpu_answer_is_the_instructions_not_onednns_support():
    assert precision.native_bf16("cpu") == (torch.cpu._is_avx512_bf16_supported()
                                            or torch.cpu._is_amx_tile_supported())


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True),
                                                         (False, True, True)])
def test_avx512_without_bf16_is_not_native(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN says yes on any AVX512 core, where bf16 ran at a third of float32's rate (module docstring)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision.native_bf16("cpu") is expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_device_and_explicit_values_win(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert precision.resolve_bf16("auto", "cpu") is native
    assert precision.resolve_bf16(True, "cpu") is True
    assert precision.resolve_bf16(False, "cpu") is False


def test_anything_else_is_an_error_naming_the_setting():
    with pytest.raises(ValueError, match=r"trl\.bf16: expected true, false or auto, got 'yes'"):
        precision.resolve_bf16("yes", "cpu", "trl.bf16")


@pytest.mark.parametrize("native", [True, False])
def test_training_configs_resolve_auto(monkeypatch, tmp_path, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    rl = trl_args("grpo", tmp_path / "rl", {"use_cpu": True, "bf16": "auto", "per_device_train_batch_size": 4,
                                            "num_generations": 2, "report_to": "none"})
    assert rl.bf16 is native
    section = from_dict(TrainSection, {"bf16": "auto", "device": "cpu"})
    assert section.bf16 == "auto"
    assert training_arguments(section, tmp_path / "rm", evaluate=False).bf16 is native


def test_rm_config_rejects_other_strings():
    with pytest.raises(ValueError, match="bf16"):
        from_dict(TrainSection, {"bf16": "sometimes"})


def test_generation_decodes_in_bf16_only_where_it_is_native(monkeypatch):
    model = torch.nn.Linear(2, 2)
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr("moslim.policy.fast.native_bf16", lambda device, n=native: n)
        assert generation_dtype(model) == expected
