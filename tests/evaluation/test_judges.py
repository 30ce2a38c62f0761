import torch

from moslim.evaluation.judges import DEMO_OBJECTIVES, ModelJudge, exact_judges, independent_judge_for
from moslim.objectives import ObjectiveSet


def test_exact_verbosity_judge_uses_the_stored_upper_inclusive_bins():
    objectives = ObjectiveSet.from_yaml(DEMO_OBJECTIVES)
    (judge,) = exact_judges(objectives, DEMO_OBJECTIVES)
    # demo edges [15, 40, 70]: 15 words is still level 0, 16 is level 1, 71 is level 3
    texts = [" ".join(["word"] * n) for n in (0, 15, 16, 40, 41, 70, 71)]
    assert judge.levels([""] * len(texts), texts) == {"verbosity": [0, 0, 1, 1, 2, 2, 3]}


def test_no_exact_judge_when_no_spec_fits_the_objectives():
    # verbosity with 5 levels: the demo's 3 edges make 4 levels, so its spec does not apply
    objectives = ObjectiveSet.from_dict({"objectives": [
        {"name": "verbosity", "levels": ["a", "b", "c", "d", "e"]}, {"name": "helpfulness", "levels": ["x", "y"]}]})
    assert exact_judges(objectives) == []


class FixedScorer:
    """Stand-in scorer with hand-set probs (b, k, c) so the argmax can be checked by hand."""

    def __init__(self, objectives, probs):
        self.objectives, self.probs = objectives, probs

    def score(self, prompts, responses):
        return self.probs[: len(responses)]


def test_model_judge_takes_the_argmax_over_each_heads_own_levels(objectives):
    # k = 3 heads (3, 4, 2 levels), c = 4; harmlessness has 2 levels, so its padded classes 2-3 never win
    probs = torch.tensor([[[0.1, 0.7, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7], [0.4, 0.6, 0.0, 0.0]],
                          [[0.5, 0.2, 0.3, 0.0], [0.6, 0.2, 0.1, 0.1], [0.9, 0.1, 0.0, 0.0]]])
    judge = ModelJudge(FixedScorer(objectives, probs), name="judge", only=["helpfulness", "harmlessness"])
    assert judge.objectives == ["helpfulness", "harmlessness"]
    assert judge.levels(["q", "q"], ["a", "b"]) == {"helpfulness": [1, 0], "harmlessness": [1, 0]}


def test_the_first_judge_covering_an_objective_is_the_independent_one(objectives):
    exact = exact_judges(ObjectiveSet.from_yaml(DEMO_OBJECTIVES), DEMO_OBJECTIVES)
    model = ModelJudge(FixedScorer(objectives, None), name="judge")
    assert independent_judge_for("verbosity", [*exact, model]) is exact[0]
    assert independent_judge_for("helpfulness", [*exact, model]) is model
