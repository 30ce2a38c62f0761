"""PPO (moslim.policy.ppo): GAE, whitening and the value loss by hand; real PPO steps on a tiny Llama."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from moslim.config import from_dict
from moslim.policy.ppo import (
    GRPO_MEMBERS,
    VALUE_DIR,
    check_grpo_members,
    completion_values,
    gae,
    load_value_model,
    normalized,
    value_loss,
    whiten,
)
from moslim.policy.train import RUN_FILE, RLConfig, train_policy


def test_gae_with_gamma_and_lambda_one_is_the_reward_minus_each_value():
    values = torch.tensor([[0.5, 0.2, 0.1, 0.0], [0.3, 0.4, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rewards = torch.tensor([1.0, -1.0])
    advantages, returns = gae(values, rewards, mask, gamma=1.0, lam=1.0)
    # Monte Carlo: every token's return is the completion's reward; past the end both are 0.
    assert torch.allclose(advantages, torch.tensor([[0.5, 0.8, 0.9, 0.0], [-1.3, -1.4, 0.0, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, 0.0, 0.0]]))


def test_gae_by_hand_with_discount_and_lambda():
    values = torch.tensor([[0.5, 0.2, 9.0]])  # the last value is past the end: masked out
    mask = torch.tensor([[1, 1, 0]])
    gamma, lam = 0.9, 0.5
    advantages, returns = gae(values, torch.tensor([2.0]), mask, gamma=gamma, lam=lam)
    delta1 = 2.0 - 0.2  # last token: the reward, nothing after it
    delta0 = 0.0 + gamma * 0.2 - 0.5
    expected = torch.tensor([[delta0 + gamma * lam * delta1, delta1, 0.0]])
    assert torch.allclose(advantages, expected)
    assert torch.allclose(returns, expected + torch.tensor([[0.5, 0.2, 0.0]]))


def test_gae_leaves_an_empty_completion_at_zero():
    advantages, returns = gae(torch.ones(2, 3), torch.tensor([1.0, 5.0]), torch.tensor([[1, 0, 0], [0, 0, 0]]),
                              gamma=1.0, lam=0.95)
    assert advantages[1].abs().sum() == 0 and returns[1].abs().sum() == 0
    assert advantages[0, 0] == pytest.approx(0.0)  # reward 1 minus value 1


def test_whiten_uses_only_the_masked_entries():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    out = whiten(x, mask)
    kept = out[mask.bool()]
    assert kept.mean().abs() < 1e-6 and kept.var(unbiased=False) == pytest.approx(1.0, abs=1e-5)
    assert torch.all(out[~mask.bool()] == 0)


def test_rewards_are_centred_and_scaled_over_the_batch():
    out = normalized(torch.tensor([-1.0, -0.5, -0.5, 0.0]))
    assert out.mean().abs() < 1e-6 and out.std().item() == pytest.approx(1.0, abs=1e-5)
    assert out.tolist() == sorted(out.tolist())  # order kept
    assert normalized(torch.tensor([-0.7])).tolist() == [0.0]


def test_value_loss_clips_a_value_that_moved_too_far_away_from_its_target():
    old, returns, mask = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2)
    # moving towards the target past the clip range: the clipped (larger) error counts
    loss, clipfrac = value_loss(torch.tensor([[0.9, 0.1]]), old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * ((1 - 0.2) ** 2 + (1 - 0.1) ** 2) / 2)
    assert clipfrac.item() == pytest.approx(0.5)
    # moving away from the target: the unclipped error is larger and counts
    loss, clipfrac = value_loss(torch.tensor([[-0.9, 0.0]]), old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.9 ** 2 + 1.0) / 2) and clipfrac.item() == 0.0


def test_completion_values_read_the_position_before_each_token(tiny_causal_lm_dir):
    model = load_value_model(tiny_causal_lm_dir)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # a zero head would make every value 0
    model.eval()
    prompt, completion = [5, 6, 7], [8, 9]
    batch = {"prompt_ids": torch.tensor([[0, *prompt]]), "prompt_mask": torch.tensor([[0, 1, 1, 1]]),
             "completion_ids": torch.tensor([completion]), "completion_mask": torch.tensor([[1, 1]])}
    with torch.no_grad():
        values = completion_values(model, batch)
        alone = model(input_ids=torch.tensor([prompt + completion])).logits[0, :, 0]
    # V before token 8 is the output at 7 (the prompt's last position); before 9, the output at 8.
    assert torch.allclose(values[0], alone[2:4], atol=1e-5)


def test_the_value_model_starts_at_zero_without_dropout(tiny_causal_lm_dir):
    model = load_value_model(tiny_causal_lm_dir)
    assert torch.all(model.score.weight == 0) and model.config.classifier_dropout == 0.0
    ids = torch.tensor([[5, 6, 7]])
    assert torch.all(model(input_ids=ids).logits == 0)


def _ppo_config(make_config, policy, rm, prompts, out, trl=None, ppo=None, rollout="stock") -> RLConfig:
    config = make_config(policy, rm, prompts, out, "ppo", {"beta": 0.05, **(trl or {})})
    config.train.rollout = rollout
    if ppo:
        for key, value in ppo.items():
            setattr(config.ppo, key, value)
    return config


@pytest.mark.parametrize("rollout,trl", [("stock", {}), ("fast", {}), ("stock", {"num_iterations": 2})])
def test_ppo_steps_train_the_policy_and_the_critic(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir,
                                                  prompts_file, rollout, trl):
    out = tmp_path / "run"
    final = train_policy(_ppo_config(make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out, trl=trl,
                                     rollout=rollout))
    before, after = load_file(tiny_causal_lm_dir / "model.safetensors"), load_file(final / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before), "no policy parameter moved"
    assert not (final / VALUE_DIR).exists()  # the product is the policy; the critic lives in the checkpoints
    critic = load_file(out / "checkpoint-2" / VALUE_DIR / "model.safetensors")
    assert critic["score.weight"].abs().sum() > 0, "the value head never left zero"
    summary = json.loads((out / RUN_FILE).read_text())
    assert summary["algorithm"] == "ppo" and summary["global_step"] == 2
    for step in summary["steps"]:
        assert {"ppo/value_loss", "ppo/value_mean", "ppo/return_mean", "kl"} <= step.keys()
    assert summary["steps"][0]["ppo/value_mean"] == 0.0  # the zero head's first estimates


def test_ppo_resumes_exactly_with_its_critic(tmp_path, make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file):
    # A constant learning rate, so a 2-step run is the first 2 steps of a 3-step one (a linear decay is not).
    constant = {"lr_scheduler_type": "constant"}
    straight = tmp_path / "straight"
    train_policy(_ppo_config(make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, straight,
                             trl={**constant, "max_steps": 3}))
    resumed = tmp_path / "resumed"
    train_policy(_ppo_config(make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, resumed, trl=constant))
    shutil.rmtree(resumed / "final")
    train_policy(_ppo_config(make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, resumed,
                             trl={**constant, "max_steps": 3}))
    assert json.loads((resumed / RUN_FILE).read_text())["resumed_from"].endswith("checkpoint-2")
    for name in ("model.safetensors", f"{VALUE_DIR}/model.safetensors"):
        a, b = load_file(straight / "checkpoint-3" / name), load_file(resumed / "checkpoint-3" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), f"{name}: {key} differs after resuming"


def test_resuming_ppo_from_a_checkpoint_without_a_critic_is_a_clear_error(tmp_path, make_config, tiny_causal_lm_dir,
                                                                         tiny_rm_dir, prompts_file):
    out = tmp_path / "run"
    train_policy(make_config(tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out, "grpo", {"max_steps": 1}))
    config = _ppo_config(make_config, tiny_causal_lm_dir, tiny_rm_dir, prompts_file, out)
    with pytest.raises(ValueError, match="no value_model"):
        train_policy(config)


def test_a_ppo_section_without_ppo_is_refused():
    with pytest.raises(ValueError, match="train.algorithm=ppo"):
        from_dict(RLConfig, {"ppo": {"vf_coef": 0.5}}).check()
    from_dict(RLConfig, {"train": {"algorithm": "ppo"}, "ppo": {"vf_coef": 0.5}}).check()


@pytest.mark.parametrize("key,value", [("lam", 1.5), ("cliprange_value", 0.0), ("vf_coef", -1.0)])
def test_ppo_settings_out_of_range_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        from_dict(RLConfig, {"train": {"algorithm": "ppo"}, "ppo": {key: value}})


def test_the_trl_members_ppo_builds_on_exist_and_a_missing_one_is_named():
    from trl import GRPOTrainer

    check_grpo_members(GRPOTrainer)  # the pinned TRL has them all
    gone = type("OlderGRPOTrainer", (), {name: (lambda self: None) for name in GRPO_MEMBERS[1:]})
    with pytest.raises(RuntimeError, match=r"OlderGRPOTrainer has no _calculate_rewards; .*trl 1.16"):
        check_grpo_members(gone)
