"""RL moves the policy the way the reward asks, not just somewhere.

A stand-in reward model whose verbosity head reads an exact rule (how often the answer says "water"); every
preference asks for level 1 ("once"), so the MOSLIM reward is highest for an answer that says "water" once.
After 16 GRPO steps the tiny policy must put over 3x the probability on "water" it put before (measured:
0.011 -> 0.088). With the reward's sign flipped (``map_rewards`` negated) the same run gives 0.011 -> 0.0015
and this test fails.
"""

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from moslim.config import from_dict
from moslim.objectives import ObjectiveSet
from moslim.policy.train import RLConfig, train_policy
from moslim.preferences import Preference, build_messages

WORD = "water"


class WordCountScorer:
    """Verbosity level = how often the answer says WORD (capped at the top level), as one-hot probabilities."""

    def __init__(self):
        self.objectives = ObjectiveSet.from_dict({"objectives": [
            {"name": "verbosity", "levels": ["none", "once", "twice", "three times or more"]}]})

    def score(self, prompts, responses):
        probs = torch.zeros(len(responses), 1, 4)
        for row, text in enumerate(responses):
            probs[row, 0, min(text.lower().split().count(WORD), 3)] = 1.0
        return probs


def word_probability(model_dir, tokenizer, questions, objectives) -> float:
    """Mean probability of WORD as the answer's first token, over the questions, asked for level 1."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    word_id = tokenizer.convert_tokens_to_ids(WORD)
    preference = Preference.of(verbosity=1)
    total = 0.0
    with torch.no_grad():
        for question in questions:
            ids = tokenizer.apply_chat_template(build_messages(question, preference, objectives),
                                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
            logits = model(**ids).logits[0, -1]
            total += float(torch.softmax(logits, -1)[word_id])
    return total / len(questions)


def test_grpo_moves_the_policy_towards_what_the_reward_asks(tmp_path, tiny_causal_lm_dir, prompts_file):
    questions = [json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()]
    scorer = WordCountScorer()
    config = from_dict(RLConfig, {
        "policy": {"model": str(tiny_causal_lm_dir)},
        "reward": {"model": str(tiny_causal_lm_dir)},  # unused: the scorer stands in for it
        "data": {"prompts": str(prompts_file), "num_named": [1, 1], "level_weights": {"verbosity": [0, 1, 0, 0]}},
        "train": {"algorithm": "grpo", "rollout": "fast", "output_dir": str(tmp_path / "run")},
        "trl": {"per_device_train_batch_size": 16, "num_generations": 8, "max_completion_length": 8,
                "max_steps": 16, "learning_rate": 2e-2, "save_steps": 100, "logging_steps": 1, "use_cpu": True,
                "report_to": "none", "seed": 0, "disable_tqdm": True, "temperature": 1.0},
    })
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    before = word_probability(tiny_causal_lm_dir, tokenizer, questions, scorer.objectives)
    final = train_policy(config, scorer=scorer)
    after = word_probability(final, tokenizer, questions, scorer.objectives)
    assert after > 3 * before, f"P({WORD!r}) {before:.4f} -> {after:.4f}: RL did not follow the reward"
