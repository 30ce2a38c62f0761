"""What GRPO sees when it is asked to refuse: groups of samples from a policy, and the reward's gap inside them.

For the study's validation (or RL) prompts, half safe and half unsafe, the policy answers each prompt
``--samples`` times under the preference harmlessness=1, at the RL temperature (1.0) or the evaluation's (0.7).
Each answer is judged by the string-match refusal rule and scored by the reward model, both ways its harmlessness
factors combine (``reward.factored_as``: ``harm`` and ``appropriate``). Per prompt kind it prints:
- the refusal rate, and how many groups all refuse, all comply, or mix (only a mixed group carries a
  refuse-vs-comply advantage in GRPO);
- inside the mixed groups, the reward of the refusals minus the reward of the compliant answers;
- the share of the group advantage's mass that sits in those mixed groups.

The refusal gap (unsafe refused minus safe refused) measures how far the policy conditions refusal on the request.
``--opening-auc`` also measures what the policy knows before it samples: over every held-out prompt, the
log-probability of opening its answer with a refusal (``I'm sorry``), and the AUC of that score between unsafe and
safe prompts (0.5: the opening does not depend on the request; 1: every unsafe prompt above every safe one).

    .venv/bin/python benchmarks/refusal_groups.py --policy runs/study-harvest/rm_harmlessness/final \
        --rm runs/rm-harvest --prompts validation --temperature 0.7
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controllability_study import HARM_VALIDATION, split_prompts  # noqa: E402


def group_summary(refused: torch.Tensor, rewards: dict[str, torch.Tensor]) -> dict:
    """refused (prompts, samples) bool; rewards {name: (prompts, samples)} -> rates, group kinds and, per
    reward, the refuse-minus-comply gap inside mixed groups and the advantage mass those groups hold."""
    counts = refused.sum(1)
    mixed = (counts > 0) & (counts < refused.shape[1])
    out = {"refused": float(refused.float().mean()), "groups_all_refuse": int((counts == refused.shape[1]).sum()),
           "groups_all_comply": int((counts == 0).sum()), "groups_mixed": int(mixed.sum())}
    for name, reward in rewards.items():
        gaps = [float(reward[i][refused[i]].mean() - reward[i][~refused[i]].mean()) for i in mixed.nonzero().flatten()]
        advantage = (reward - reward.mean(1, keepdim=True)).abs()
        out[name] = {"refuse_minus_comply_in_mixed": sum(gaps) / len(gaps) if gaps else None,
                     "advantage_share_in_mixed": float(advantage[mixed].sum() / advantage.sum().clamp_min(1e-12))}
    return out


def asked_in(folder, objectives, template) -> tuple:
    """(objectives, template) to pass on: None, None for a policy saved with its objectives (it is asked in the words
    and template it was trained with), else the given ones (a base model; the default template when None)."""
    if folder is not None and (Path(folder) / "objectives.yaml").exists():
        return None, None
    return objectives, template


def opening_auc(policy: str, records, objectives, opening: str = "I'm sorry", template=None) -> dict:
    """AUC (unsafe vs safe prompts) of log P(the answer opens with ``opening``) under harmlessness=1, and the mean
    probability of that opening per kind. A policy saved with its objectives is asked in those; ``objectives`` and
    ``template`` (a PromptTemplate) are for a base model."""
    from scipy.stats import mannwhitneyu

    from moslim.data.schema import prompt_text
    from moslim.policy.generate import load_policy, policy_setting, render_prompts
    from moslim.preferences import Preference

    model, tokenizer, folder = load_policy(policy)
    objectives, template = policy_setting(folder, *asked_in(folder, objectives, template))
    prompts = render_prompts(tokenizer, [prompt_text(r.prompt) for r in records],
                             [Preference.of(harmlessness=1)] * len(records), objectives, template)
    opening_ids = tokenizer(opening, add_special_tokens=False)["input_ids"]
    scores = {"safe": [], "unsafe": []}
    with torch.inference_mode():
        for record, ids in zip(records, tokenizer(prompts, add_special_tokens=False)["input_ids"]):
            full = torch.tensor([list(ids) + opening_ids])
            logprobs = torch.log_softmax(model(full).logits[0, len(ids) - 1:-1].float(), -1)
            scores[record.tags["safety"]].append(float(logprobs.gather(1, torch.tensor(opening_ids)[:, None]).sum()))
    u = mannwhitneyu(scores["unsafe"], scores["safe"]).statistic
    return {"opening": opening, "auc_unsafe_vs_safe": float(u / (len(scores["unsafe"]) * len(scores["safe"]))),
            **{f"mean_p_{kind}": float(torch.tensor(v).exp().mean()) for kind, v in scores.items()},
            "n_safe": len(scores["safe"]), "n_unsafe": len(scores["unsafe"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="policy folder or built-in name")
    parser.add_argument("--rm", default="runs/demo/rm", help="reward model with a factored harmlessness head")
    parser.add_argument("--prompts", choices=("validation", "train"), default="validation",
                        help="the study's held-out prompts, or its RL prompts")
    parser.add_argument("--per-kind", type=int, default=24, help="prompts per kind (safe, unsafe)")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt (the RL's num_generations)")
    parser.add_argument("--temperature", type=float, default=1.0, help="1.0 as in RL; 0.7 as in the evaluation")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--opening-auc", action="store_true",
                        help="only the refusal opening's AUC between unsafe and safe held-out prompts (no sampling)")
    parser.add_argument("--objectives", default="src/moslim/assets/demo/objectives.yaml",
                        help="the level wording a base model is asked in (an RL policy is asked in the wording "
                             "saved with it)")
    parser.add_argument("--template", default=None,
                        help="the prompt template YAML for a base model (default: the system message; an RL policy "
                             "uses its own)")
    parser.add_argument("--opening", default="I'm sorry",
                        help="the refusal opening --opening-auc scores (SmolLM2's; another policy may refuse in "
                             "other words)")
    args = parser.parse_args()

    from moslim.data.refusal import is_refusal
    from moslim.data.schema import prompt_text
    from moslim.objectives import ObjectiveSet
    from moslim.policy.data import load_template
    from moslim.policy.generate import generate_completions
    from moslim.preferences import Preference
    from moslim.reward.scorer import RewardScorer, appropriate_probs

    train, validation, harm = split_prompts(0, 32, HARM_VALIDATION)
    pool = train if args.prompts == "train" else validation + harm
    rng = random.Random(args.seed)
    kinds = {kind: rng.sample([r for r in pool if r.tags.get("safety") == kind], args.per_kind)
             for kind in ("safe", "unsafe")}
    objectives = ObjectiveSet.from_yaml(args.objectives)
    template = load_template(args.template) if args.template else None
    if args.opening_auc:
        auc = opening_auc(args.policy, validation + harm, objectives, args.opening, template)
        print(json.dumps({"settings": vars(args), **auc}, indent=1))
        return
    scorer = RewardScorer.from_pretrained(args.rm)
    k, n = len(scorer.objectives), args.samples
    h = scorer.objectives.index("harmlessness")
    result = {"settings": vars(args)}
    asked, asked_template = asked_in(Path(args.policy), objectives, template)
    for kind, records in kinds.items():
        questions = [prompt_text(r.prompt) for r in records]
        outputs = generate_completions(args.policy, questions, Preference.of(harmlessness=1), objectives=asked,
                                       template=asked_template,
                                       max_new_tokens=args.tokens, temperature=args.temperature,
                                       top_p=1.0 if args.temperature == 1.0 else 0.95, num_samples=n, seed=0,
                                       batch_size=24, progress=False)
        answers = [a for group in outputs for a in group]
        probs = scorer.score([q for q in questions for _ in range(n)], answers, with_factors=True)
        # level 1 of harmlessness as RL's reward sees it: the model's own product, or reward.factored_as=appropriate
        rewards = {"appropriate": appropriate_probs(probs, h, k)[:, h, 1], "harm": probs[:, h, 1]}
        refused = torch.tensor([is_refusal(a) for a in answers]).view(len(records), n)
        result[kind] = group_summary(refused, {name: r.view(len(records), n) for name, r in rewards.items()})
    result["refusal_gap"] = result["unsafe"]["refused"] - result["safe"]["refused"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
