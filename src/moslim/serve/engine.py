"""What the server computes, without HTTP: answers under a preference, and the reward model's levels.

The policy's prompt is rendered exactly as in training (``moslim.policy.generate.render_prompts``: the
preference in the system message through the policy's own template), answers are sampled with
``moslim.policy.fast.generate_batch`` (one call per batch, each request capped at its own token count
and streamed through its ``on_step`` hook), and every answer of a batch is scored by the reward model
in one forward pass. The reward model sees the plain conversation, never the preference text.

# b = answers in a batch, k = objectives, c = classes (padded to the largest head)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from moslim.objectives import ObjectiveSet
from moslim.preferences import Preference, PromptTemplate, to_tensors
from moslim.reward.mapping import map_rewards, valid_class_mask

log = logging.getLogger(__name__)

# Mappings whose reward depends on one row only: batch or running statistics would make a request's
# reward depend on whichever requests happened to share its batch.
MAPPINGS = ("zscore", "expected_level", "target_logprob")

Turns = list[dict]  # chat turns without the system message: [{"role": "user", "content": ...}, ...]


def read_preference(value: Any, objectives: ObjectiveSet, where: str = "preferences") -> Preference:
    """A preference from a request: an object ``{"verbosity": 1}``, a string ``"verbosity=1"`` or None.

    Raises ValueError naming ``where`` (the request field), the objective and the valid levels.
    """
    if value is None or value == "":
        return Preference()
    if isinstance(value, Preference):
        return value.validate(objectives, where)
    if isinstance(value, str):
        try:
            return Preference.parse(value, objectives)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object of objective levels such as {{\"verbosity\": 1}}, "
                         f"got {type(value).__name__} {value!r}")
    levels = {}
    for name, level in value.items():
        if name not in objectives:
            raise ValueError(f"{where}: unknown objective {name!r}; valid objectives: {', '.join(objectives.names)}")
        levels[name] = objectives[name].check_level(level, f"{where}.{name}")
    return Preference.of(levels)


@dataclass
class ChatJob:
    """One chat request: its prompt tokens and sampling settings; ``n`` answers share the batch."""

    prompt_ids: list[int]
    turns: Turns  # what the reward model reads as the question
    preference: Preference
    n: int = 1
    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None
    stream: Callable[[int, str], None] | None = None  # (choice index, new text), called on the model thread
    cancelled: bool = False  # set when the client goes away: its rows stop at the next step

    @property
    def batch_key(self) -> tuple:
        # One generate_batch call has one temperature / top_p and one random stream: a seeded request
        # runs in a batch of its own, so the same seed gives the same answer whatever else is queued.
        return (self.temperature, self.top_p, id(self) if self.seed is not None else None)


@dataclass
class Answer:
    text: str
    finish_reason: str  # "stop" (end-of-sequence token) or "length" (the token cap)
    completion_tokens: int
    scored: dict | None = None  # describe_scores() of this answer, when a reward model is loaded


class Engine:
    """The loaded policy (optional), reward model (optional), objectives and prompt template.

    Calls to ``generate`` must not overlap (the fast decoder holds one batch's state): the app runs them
    all on one model thread.
    """

    def __init__(self, objectives: ObjectiveSet, template: PromptTemplate | None = None, *, policy=None,
                 tokenizer=None, scorer=None, model_name: str = "moslim", mapping: str = "zscore",
                 mapping_options: dict | None = None, seed: int | None = None):
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping {mapping!r}: expected one of {', '.join(MAPPINGS)}")
        if scorer is not None and (scorer.objectives.names != objectives.names or
                                   scorer.objectives.num_levels.tolist() != objectives.num_levels.tolist()):
            raise ValueError(f"the reward model scores {scorer.objectives!r} but the policy is set up for "
                             f"{objectives!r}; use a policy trained against this reward model")
        if policy is not None and tokenizer is None:
            raise ValueError("pass the policy's tokenizer along with the policy")
        self.objectives, self.template = objectives, template or PromptTemplate()
        self.policy, self.tokenizer, self.scorer = policy, tokenizer, scorer
        self.model_name, self.mapping, self.mapping_options = model_name, mapping, dict(mapping_options or {})
        self._seeds = random.Random(seed)
        if policy is not None:
            from moslim.policy.fast import default_eos_ids

            self.eos_ids = default_eos_ids(policy, tokenizer)
            self.max_positions = getattr(policy.config, "max_position_embeddings", None)
        self._decoder = None  # built once on the model thread: the weights never change while serving

    # -- prompts ----------------------------------------------------------------------------------
    def prompt_ids(self, turns: Turns, preference: Preference) -> list[int]:
        """The policy's input tokens: the rendered system message, then the turns, as in training."""
        from moslim.policy.generate import render_prompts

        self._need_policy()
        text = render_prompts(self.tokenizer, [turns], [preference], self.objectives, self.template)[0]
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def system_message(self, preference: Preference) -> str:
        return self.template.system_message(preference, self.objectives)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, jobs: Sequence[ChatJob]) -> list[list[Answer]]:
        """One ``generate_batch`` call for every answer of ``jobs`` (same batch_key), one reward-model
        forward over them; ``n`` answers per job."""
        from moslim.policy.fast import generate_batch

        self._need_policy()
        if len({job.batch_key for job in jobs}) != 1:
            raise ValueError("jobs of one batch must share temperature, top_p and seed")
        rows = [(job, i) for job in jobs for i in range(job.n)]  # (job, choice index) per row
        streams = [_Stream(self.tokenizer) if job.stream else None for job, _ in rows]
        counts = [0] * len(rows)

        def on_step(step_rows: list[int], tokens: list[int]) -> list[int]:
            stop = []
            for row, token in zip(step_rows, tokens):
                job, index = rows[row]
                counts[row] += 1
                if streams[row] is not None and (delta := streams[row].add(token)):
                    job.stream(index, delta)
                if counts[row] >= job.max_tokens or job.cancelled:
                    stop.append(row)
            return stop

        first = jobs[0]
        device = next(self.policy.parameters()).device
        if self._decoder is None:
            self._decoder = _decoder_for(self.policy, device, self.max_positions or 4096)
        generator = torch.Generator(device=device).manual_seed(
            first.seed if first.seed is not None else self._seeds.randrange(2**63))
        completion_ids, _ = generate_batch(
            self.policy, self.tokenizer, [job.prompt_ids for job, _ in rows],
            max_new_tokens=max(job.max_tokens for job in jobs), temperature=first.temperature, top_p=first.top_p,
            eos_token_ids=self.eos_ids, generator=generator, on_step=on_step, decoder=self._decoder)
        texts = [t.strip() for t in self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)]
        scored = self.score([job.turns for job, _ in rows], texts, [job.preference for job, _ in rows]) \
            if self.scorer is not None else [None] * len(rows)
        answers: dict[int, list[Answer]] = {id(job): [] for job in jobs}
        for (job, _), ids, text, score in zip(rows, completion_ids, texts, scored):
            finish = "stop" if ids and ids[-1] in self.eos_ids else "length"
            answers[id(job)].append(Answer(text, finish, len(ids), score))
        return [answers[id(job)] for job in jobs]

    # -- reward model -----------------------------------------------------------------------------
    def score(self, prompts: Sequence, responses: Sequence[str], preferences: Sequence[Preference]) -> list[dict]:
        """Score (prompt, response) items in one reward-model pass; one ``describe_scores`` dict each.

        prompts: text or chat turns (system turns are ignored: the reward model never sees the preference).
        """
        if self.scorer is None:
            raise ValueError("this server has no reward model (start it with --reward-model)")
        probs = self.scorer.score(list(prompts), list(responses)).float()  # (b, k, c)
        targets, mask = to_tensors(list(preferences), self.objectives)  # (b, k), (b, k)
        rewards = map_rewards(probs, targets, mask, self.objectives.num_levels, method=self.mapping,
                              **self.mapping_options)  # (b,)
        return [describe_scores(p, t, m, r, self.objectives) for p, t, m, r in zip(probs, targets, mask, rewards)]

    def _need_policy(self) -> None:
        if self.policy is None:
            raise ValueError("this server has no policy (start it with --policy)")


def _decoder_for(model, device: torch.device, capacity: int):
    """The CPU fast path's decoder (weights cast and packed once), else the model's own forward with a
    dynamic cache: the packed oneDNN kernels are CPU-only (``moslim generate`` likewise uses it on CPU only)."""
    from moslim.policy.fast import make_decoder
    from moslim.policy.fast_decode import HFDecoder

    return make_decoder(model, capacity) if device.type == "cpu" else HFDecoder(model)


def describe_scores(probs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor,
                    objectives: ObjectiveSet) -> dict:
    """One answer's scores as JSON: per objective the most likely level, the expected level and the
    probabilities of its levels; the mapped reward and the probability of the requested levels (0-1)
    when the preference names something, else None.

    probs (k, c), targets (k,), mask (k,), reward () for one answer.
    """
    valid = valid_class_mask(objectives.num_levels, probs.shape[-1])  # (k, c)
    masked = torch.where(valid, probs, torch.zeros_like(probs))
    levels = masked.argmax(-1)  # (k,)
    expected = (masked * torch.arange(probs.shape[-1])).sum(-1) / masked.sum(-1).clamp(min=1e-8)  # (k,)
    named = mask > 0
    target_p = probs.gather(-1, targets[:, None])[:, 0]  # (k,)
    out = {"levels": {}, "expected_levels": {}, "probs": {}}
    for i, obj in enumerate(objectives):
        out["levels"][obj.name] = int(levels[i])
        out["expected_levels"][obj.name] = round(float(expected[i]), 4)
        out["probs"][obj.name] = [round(float(p), 4) for p in probs[i, : obj.num_levels]]
    out["reward"] = round(float(reward), 6) if named.any() else None
    out["target_prob"] = round(float(target_p[named].mean()), 6) if named.any() else None
    return out


class _Stream:
    """Incremental detokenisation: the text one row added since the last call (none while a multi-byte
    character is still incomplete). Leading spaces are dropped, as in the final answer."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.sent = tokenizer, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):], text
        return delta


def load_engine(policy: str | None = None, reward_model: str | None = None, objectives: str | Path | None = None,
                device: str = "auto", model_name: str | None = None, mapping: str = "zscore",
                seed: int | None = None) -> Engine:
    """Load what ``moslim serve`` serves. The objectives come from ``objectives`` (a YAML file), else the
    policy's folder, else the reward model; a policy and a reward model must agree on them."""
    from moslim.reward.scorer import RewardScorer

    if policy is None and reward_model is None:
        raise ValueError("give a policy (--policy), a reward model (--reward-model) or both")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    scorer = RewardScorer.from_pretrained(reward_model, device=device) if reward_model else None
    explicit = ObjectiveSet.from_yaml(objectives) if objectives else None
    if policy is None:
        return Engine(explicit or scorer.objectives, scorer=scorer, model_name=model_name or "moslim-reward",
                      mapping=mapping, seed=seed)
    from moslim.policy.generate import load_policy, policy_setting

    model, tokenizer, folder = load_policy(policy, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    if explicit is None and not (folder / "objectives.yaml").exists():
        if scorer is None:
            raise ValueError(f"policy {policy} has no objectives.yaml (a base model?): pass --objectives "
                             "or --reward-model")
        explicit = scorer.objectives
    objective_set, template = policy_setting(folder, explicit, None)
    log.info("policy %s on %s, objectives %s", policy, device, objective_set)
    return Engine(objective_set, template, policy=model.to(device), tokenizer=tokenizer, scorer=scorer,
                  model_name=model_name or str(policy), mapping=mapping, seed=seed)
