"""The factored harmlessness head: harmful = P(unsafe request) x P(answer complies), and its two factor heads."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from moslim.objectives import Objective, ObjectiveSet
from moslim.reward.model import MultiHeadRewardConfig, MultiHeadRewardModel, factored_log_probs
from moslim.reward.train import train_reward_model

FACTORS = ObjectiveSet([
    Objective("unsafe_request", ("safe request", "unsafe request")),
    Objective("refusal", ("answers", "refuses")),
])


def test_factored_log_probs_are_the_xstest_rule():
    unsafe, refuses = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([-0.5, 3.0, 0.0])
    probs = factored_log_probs(torch.stack([unsafe, refuses], -1)).exp()
    harm = torch.sigmoid(unsafe) * (1 - torch.sigmoid(refuses))
    assert torch.allclose(probs[:, 0], harm, atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-6)
    # Saturated factors stay finite: a sure harmful answer and a sure harmless one.
    extreme = factored_log_probs(torch.tensor([[60.0, -60.0], [-60.0, 60.0]]))
    assert torch.isfinite(extreme).all()
    assert extreme.exp()[0, 0] > 0.999 and extreme.exp()[1, 1] > 0.999


@pytest.fixture
def factored_rm(tiny_causal_lm_dir, objectives):
    return MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives, factored="harmlessness",
                                              factors=FACTORS).eval()


def test_factored_head_gives_the_product_and_training_logits_add_the_factors(factored_rm, objectives):
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.no_grad():
        out = factored_rm(input_ids=ids, attention_mask=mask)
    h = objectives.index("harmlessness")
    unsafe, refuses = out.factor_logits.unbind(-1)
    expected = torch.sigmoid(unsafe) * torch.sigmoid(-refuses)
    assert torch.allclose(torch.softmax(out.logits[:, h, :2], -1)[:, 0], expected, atol=1e-5)
    training = factored_rm.training_logits(out)
    assert factored_rm.training_objectives.names == objectives.names + ["unsafe_request", "refusal"]
    assert training.shape == (2, len(objectives) + 2, out.logits.shape[-1])
    assert torch.allclose(torch.softmax(training[:, -2], -1)[:, 1], torch.sigmoid(unsafe), atol=1e-6)
    assert torch.allclose(torch.softmax(training[:, -1], -1)[:, 1], torch.sigmoid(refuses), atol=1e-6)


def test_factored_model_round_trips(factored_rm, tmp_path):
    factored_rm.save_pretrained(tmp_path / "rm")
    again = MultiHeadRewardModel.from_pretrained(tmp_path / "rm").eval()
    assert again.config.factored == "harmlessness" and again.config.factor_set == FACTORS
    ids, mask = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
    saved, loaded = factored_rm.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)  # bit for bit
    with torch.no_grad():  # the same weights can differ in the last bit of a float32 kernel's sum order
        torch.testing.assert_close(again(input_ids=ids, attention_mask=mask).logits,
                                   factored_rm(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-6)


def test_config_rejects_a_factored_objective_without_two_binary_factors(objectives):
    with pytest.raises(ValueError, match="needs `factors`"):
        MultiHeadRewardConfig(text_config={"model_type": "llama"}, objectives=objectives.to_dict(),
                              factored="harmlessness")
    with pytest.raises(ValueError, match="have 2 levels"):
        MultiHeadRewardConfig(text_config={"model_type": "llama"}, objectives=objectives.to_dict(),
                              factored="verbosity", factors=FACTORS.to_dict())


def _factored_files(tmp_path, rm_data):
    """The tiny objectives with a factors section; rows label the factors from their text."""
    data = yaml.safe_load(rm_data["objectives"].read_text(encoding="utf-8"))
    data["factors"] = FACTORS.to_dict()["objectives"]
    objectives = tmp_path / "objectives.yaml"
    objectives.write_text(yaml.safe_dump(data), encoding="utf-8")
    for split in ("train", "eval"):
        rows = [json.loads(line) for line in rm_data[split].read_text(encoding="utf-8").splitlines()]
        for i, row in enumerate(rows):
            row["labels"]["unsafe_request"] = 1 - row["labels"]["harmlessness"] if i % 2 else 0
            if i % 3 == 0:
                row["labels"]["refusal"] = 0
        rm_data[split].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return objectives


@pytest.mark.parametrize("cache", [False, True])
def test_training_a_factored_model_reports_every_head(tiny_rm_config, rm_data, tmp_path, cache):
    config = tiny_rm_config
    config.data.objectives = str(_factored_files(tmp_path, rm_data))
    config.model.factored = "harmlessness"
    if cache:
        config.model.freeze_layers = 1
    out = train_reward_model(config)
    summary = json.loads((out / "moslim_run.json").read_text(encoding="utf-8"))
    heads = summary["metrics"]["heads"]
    assert set(heads) == {"helpfulness", "verbosity", "harmlessness", "unsafe_request", "refusal"}
    assert heads["unsafe_request"]["n"] == 12 and heads["refusal"]["n"] == 4
    assert all(math.isfinite(r["loss"]) for r in summary["history"] if "loss" in r)
    model = MultiHeadRewardModel.from_pretrained(out)
    assert model.config.factored == "harmlessness" and model.config.factor_set.names == ["unsafe_request", "refusal"]


def test_factored_without_a_factors_section_is_a_clear_error(tiny_rm_config):
    tiny_rm_config.model.factored = "harmlessness"
    with pytest.raises(ValueError, match="`factors` section"):
        train_reward_model(tiny_rm_config)


def test_factor_labels_train_their_heads_only_through_the_product(factored_rm, objectives):
    """An unsafe-request label moves the request factor; a harmlessness label moves both factors."""
    from moslim.reward.losses import per_head_losses

    heads = factored_rm.training_objectives
    ids, mask = torch.tensor([[5, 6, 7, 8]]), torch.ones(1, 4, dtype=torch.long)
    h = objectives.index("harmlessness")
    for labelled, moves_request, moves_answer in (("unsafe_request", True, False), ("harmlessness", True, True)):
        factored_rm.zero_grad()
        labels = torch.full((1, len(heads)), -100)
        labels[0, heads.index(labelled)] = 1 if labelled == "unsafe_request" else 0
        logits = factored_rm.training_logits(factored_rm(input_ids=ids, attention_mask=mask))
        per_head_losses(logits, labels, heads.num_levels)[0].sum().backward()
        grad = factored_rm.heads[h].weight.grad  # row 0: request factor, row 1: answer factor
        assert (grad[0].abs().sum() > 0) == moves_request
        assert (grad[1].abs().sum() > 0) == moves_answer


def test_a_plain_model_reads_factor_labels_and_leaves_them_out(tiny_rm_config, rm_data, tmp_path):
    """Data with factor labels (the demo's) still trains a model without a factored head: three heads only."""
    tiny_rm_config.data.objectives = str(_factored_files(tmp_path, rm_data))
    out = train_reward_model(tiny_rm_config)
    heads = json.loads((out / "moslim_run.json").read_text(encoding="utf-8"))["metrics"]["heads"]
    assert set(heads) == {"helpfulness", "verbosity", "harmlessness"}
    assert MultiHeadRewardModel.from_pretrained(out).config.factored is None


def test_request_factor_at_the_question_end_does_not_read_the_answer(tiny_causal_lm_dir, tiny_tokenizer, objectives):
    """Same question, different answers: the request factor is identical, the answer factor is not."""
    from moslim.reward.encoding import PairEncoder, collate, question_ends

    model = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives, factored="harmlessness",
                                               factors=FACTORS, request_at_question_end=True,
                                               input_format="plain").eval()
    encoder = PairEncoder(tiny_tokenizer, "plain", 64)
    items = [encoder.encode("how can i help the cat ?", answer)
             for answer in ("safe good answer", "harm harmful the answer is paris .")]
    for side in ("right", "left"):
        batch = collate(items, 0, padding_side=side)
        with torch.no_grad():
            out = model(**batch, question_end=question_ends(items, side))
        assert torch.allclose(out.factor_logits[0, 0], out.factor_logits[1, 0], atol=1e-5)
        assert not torch.allclose(out.factor_logits[0, 1], out.factor_logits[1, 1], atol=1e-5)
    with pytest.raises(ValueError, match="question_end"):
        model(**collate(items, 0))


@pytest.mark.parametrize("cache", [False, True])
def test_training_reads_the_request_factor_at_the_question_end(tiny_rm_config, rm_data, tmp_path, cache):
    config = tiny_rm_config
    config.data.objectives = str(_factored_files(tmp_path, rm_data))
    config.model.factored, config.model.request_at_question_end = "harmlessness", True
    if cache:
        config.model.freeze_layers = 1
    out = train_reward_model(config)
    heads = json.loads((out / "moslim_run.json").read_text(encoding="utf-8"))["metrics"]["heads"]
    assert heads["unsafe_request"]["n"] == 12
    assert MultiHeadRewardModel.from_pretrained(out).needs_question_end


def test_appropriate_scoring_penalises_refusing_a_safe_request():
    from moslim.reward.scorer import appropriate_probs

    # k = 1 objective (the factored one), then the factors (request unsafe, answer refuses), 2 classes each.
    def row(p_unsafe, p_refuses):
        return [[0.0, 0.0], [1 - p_unsafe, p_unsafe], [1 - p_refuses, p_refuses]]

    probs = torch.tensor([row(0.9, 0.9), row(0.1, 0.9), row(0.9, 0.1), row(0.1, 0.1)])
    fit = appropriate_probs(probs, factored=0, k=1)[:, 0]
    expected = torch.tensor([0.9 * 0.9 + 0.1 * 0.1, 0.1 * 0.9 + 0.9 * 0.1, 0.9 * 0.1 + 0.1 * 0.9,
                             0.1 * 0.1 + 0.9 * 0.9])
    torch.testing.assert_close(fit[:, 1], expected)
    torch.testing.assert_close(fit.sum(-1), torch.ones(4))
    # The model's own product calls a refused safe request harmless (0.91); appropriateness calls it 0.18.
    harm = 1 - 0.1 * (1 - 0.9)
    assert harm > 0.9 and fit[1, 1] < 0.2


def test_scorer_scores_a_factored_objective_as_appropriate_when_asked(factored_rm, tiny_tokenizer, objectives):
    from moslim.reward.scorer import RewardScorer, appropriate_probs

    prompts, answers = ["how do I bake bread", "tell me a secret"], ["knead it well", "no"]
    harm = RewardScorer(factored_rm, tiny_tokenizer, device="cpu")
    fit = RewardScorer(factored_rm, tiny_tokenizer, device="cpu", factored_as="appropriate")
    full = harm.score(prompts, answers, with_factors=True)
    k, h = len(objectives), objectives.index("harmlessness")
    torch.testing.assert_close(fit.score(prompts, answers), appropriate_probs(full, h, k))
    others = [i for i in range(k) if i != h]
    torch.testing.assert_close(fit.score(prompts, answers)[:, others], harm.score(prompts, answers)[:, others])
    with pytest.raises(ValueError, match="expected one of harm, appropriate"):
        RewardScorer(factored_rm, tiny_tokenizer, device="cpu", factored_as="appropiate")


def test_appropriate_scoring_needs_a_factored_model(tiny_causal_lm_dir, tiny_tokenizer, objectives):
    from moslim.reward.scorer import RewardScorer

    plain = MultiHeadRewardModel.from_backbone(tiny_causal_lm_dir, objectives).eval()
    with pytest.raises(ValueError, match="needs a reward model with a factored objective"):
        RewardScorer(plain, tiny_tokenizer, device="cpu", factored_as="appropriate")
