"""PPO on TRL's GRPO machinery: a learned critic and GAE advantages, the rest of the step TRL's.

TRL removed its ``PPOTrainer`` in 1.13, and moslim pins TRL 1.16. PPO and GRPO differ in where a token's
advantage comes from, not in the rest of the step, so :class:`PPOTrainer` subclasses TRL's ``GRPOTrainer``
(whose loss takes per-token advantages from subclasses) and keeps its generation (TRL's, vLLM, or moslim's
fast CPU rollout), reward call, clipped surrogate loss (``trl.epsilon``, ``trl.loss_type``), KL to the
reference policy (``trl.beta``, a loss term as in GRPO and verl's ``use_kl_loss``, not a per-token reward),
logging, accelerate and checkpoints. What PPO adds:

- a **value model**: a causal LM trunk with a scalar head (``AutoModelForTokenClassification``,
  ``num_labels=1``, no dropout), by default the policy's own weights with a zero head (``ppo.value_model``
  picks another), estimating V(s_t) before each completion token;
- **advantages** by GAE (``ppo.gamma``, ``ppo.lam``) over per-token rewards that are 0 except the MOSLIM
  reward on a completion's last token (centred and scaled over the batch, ``ppo.normalize_rewards``),
  whitened over the batch's completion tokens; the critic's targets are the returns (advantages + values,
  before whitening). Why the rewards are centred: MOSLIM's rewards are <= 0 by construction (minus a level
  distance), so against a critic that starts at 0 every last token, the end-of-answer token included, gets a
  negative advantage, and the policy learns to stop ending its answers (SmolLM2-135M on CPU: every completion at
  the 128-token cap within 10 steps, docs/study.md);
- a **value loss**: the clipped squared error of PPO (``ppo.cliprange_value``) times ``ppo.vf_coef``, its
  backward run after the policy's (one graph in memory at a time); the value model's parameters are a second
  group of the same optimizer
  (``ppo.value_learning_rate``, default the policy's) under the same schedule and gradient clipping;
- **checkpoints**: ``checkpoint-N/value_model/`` (safetensors) is written before TRL's files, so a
  checkpoint with trainer_state.json (the one resumed from) has it; resuming restores it.

It runs in one process or under DDP. DeepSpeed and FSDP shard one model per engine, so PPO at that scale
runs on verl or OpenRLHF (``configs/verl/ppo.sh``, ``configs/openrlhf/ppo.sh``, docs/scaling.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

log = logging.getLogger(__name__)

VALUE_DIR = "value_model"  # inside each checkpoint-N
# The GRPOTrainer / Trainer methods PPOTrainer overrides or calls: TRL's private members among them are why
# pyproject.toml pins TRL's minor version; ``check_grpo_members`` names a missing one.
GRPO_MEMBERS = ("_calculate_rewards", "_generate_and_score_completions", "_prepare_inputs", "training_step",
                "compute_loss_context_manager", "_save_checkpoint",
                "_load_optimizer_and_scheduler", "_get_output_dir", "_clip_grad_norm", "create_optimizer")


def check_grpo_members(cls=GRPOTrainer) -> None:
    """Raise a RuntimeError naming the members PPOTrainer builds on that ``cls`` lacks (after a TRL upgrade)."""
    missing = [name for name in GRPO_MEMBERS if not callable(getattr(cls, name, None))]
    if missing:
        import trl

        raise RuntimeError(f"trl {trl.__version__}: {cls.__name__} has no {', '.join(missing)}; moslim's PPO "
                           "(train.algorithm=ppo) was written against trl 1.16 (the version pyproject.toml pins). "
                           "Install trl 1.16.x, or run PPO on verl or OpenRLHF (docs/scaling.md)")


def load_value_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """A causal LM's trunk with a scalar head: ``AutoModelForTokenClassification`` with one label, dropout off
    (the values computed at generation and in the update must be the same function), and a zero head, so
    every run starts from V = 0 whatever the random state."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(path, num_labels=1)
    config.classifier_dropout = 0.0  # not every architecture's config has the field; its head reads it
    model = AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=dtype)
    head = value_head(model)
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
    return model


def value_head(model) -> torch.nn.Linear:
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' head to use as a value head")


def gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation for completions rewarded once, on their last token.

    ``values`` (B, T): V(s_t) before each completion token; ``rewards`` (B,): each completion's scalar;
    ``mask`` (B, T): 1 on completion tokens (a prefix of each row). Returns ``(advantages, returns)``, both
    zero past each completion's end; ``returns = advantages + values`` are the critic's targets.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    lengths = mask.sum(1).long()
    token_rewards = torch.zeros_like(values)
    rows = torch.nonzero(lengths > 0).squeeze(1)
    token_rewards[rows, lengths[rows] - 1] = rewards[rows].to(values.dtype)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    width = values.size(1)
    for t in reversed(range(width)):
        following = values[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        delta = token_rewards[:, t] + gamma * following - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x`` shifted and scaled to mean 0 and variance 1 over the masked entries (zero elsewhere)."""
    mask = mask.to(x.dtype)
    count = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / count
    var = (((x - mean) * mask) ** 2).sum() / count
    return (x - mean) * torch.rsqrt(var + eps) * mask


def normalized(rewards: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The batch's rewards centred and scaled to unit variance (a batch of one: centred only)."""
    centred = rewards - rewards.mean()
    return centred / (centred.std() + eps) if rewards.numel() > 1 else centred


def completion_values(value_model, inputs: dict) -> torch.Tensor:
    """V(s_t) for each completion token of a TRL batch (``prompt_ids`` left-padded, ``completion_ids``):
    the value head's output at the position before each completion token, as float32, (B, T)."""
    completion = inputs["completion_ids"]
    ids = torch.cat([inputs["prompt_ids"], completion], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    scores = value_model(input_ids=ids, attention_mask=mask).logits[..., 0]
    width = completion.size(1)
    return scores[:, -width - 1: -1].float()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss, ``0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2)``, masked mean; and the
    share of tokens where the clipped term was the larger."""
    mask = mask.to(values.dtype)
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    plain, bounded = (values - returns) ** 2, (clipped - returns) ** 2
    count = mask.sum().clamp(min=1)
    loss = 0.5 * (torch.maximum(plain, bounded) * mask).sum() / count
    clipfrac = ((bounded > plain).to(values.dtype) * mask).sum() / count
    return loss, clipfrac


class _ZeroCriticGrads(TrainerCallback):
    """Trainer zeroes the policy's gradients after each optimizer step (``model.zero_grad()``); the critic's
    must be zeroed too, or they would add up across steps (and a resumed run would differ from a straight one)."""

    def __init__(self, value_model):
        self.value_model = value_model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.value_model.zero_grad(set_to_none=True)


class PPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with a critic: see the module's docstring. ``ppo`` is moslim's ``PPOSection``."""

    def __init__(self, *args, value_model, ppo, **kwargs):
        check_grpo_members()
        super().__init__(*args, **kwargs)
        kind = str(self.accelerator.distributed_type)
        if "DEEPSPEED" in kind or "FSDP" in kind:
            raise ValueError(f"train.algorithm=ppo runs in one process or under DDP, not {kind}: a second trained "
                             "model (the critic) does not fit one sharded engine; run PPO at that scale on verl "
                             "(configs/verl/ppo.sh) or OpenRLHF (configs/openrlhf/ppo.sh), see docs/scaling.md")
        self.ppo = ppo
        if self.args.gradient_checkpointing:  # as the policy: TRL's default on accelerators, off on CPU here
            value_model.gradient_checkpointing_enable()
        self.value_model = self.accelerator.prepare_model(value_model.to(self.accelerator.device))
        self.add_callback(_ZeroCriticGrads(self.value_model))
        self._rewards_per_func: torch.Tensor | None = None

    # -- the optimizer holds the critic too ----------------------------------------------------
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        params = [p for p in self.value_model.parameters() if p.requires_grad]
        held = {id(q) for group in optimizer.param_groups for q in group["params"]}
        if params and id(params[0]) not in held:  # create_optimizer may be called again on a built optimizer
            lr = self.ppo.value_learning_rate or self.args.learning_rate
            optimizer.add_param_group({"params": params, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def _clip_grad_norm(self, model):
        """One norm over the policy's and the critic's gradients, clipped together."""
        params = [*model.parameters(), *self.value_model.parameters()]
        return self.accelerator.clip_grad_norm_(params, self.args.max_grad_norm)

    # -- advantages from the critic ------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        rows = out["completion_ids"].size(0)
        every = self._rewards_per_func  # TRL gathers every process's rewards
        rewards = (every * self.reward_weights.to(every.device).unsqueeze(0)).nansum(dim=1)
        if self.ppo.normalize_rewards:
            rewards = normalized(rewards)
        start = self.accelerator.process_index * rows
        rewards = rewards[start: start + rows]
        mask = out["completion_mask"].float()
        with torch.no_grad():
            values = completion_values(self.value_model, out) * mask
        advantages, returns = gae(values, rewards, mask, self.ppo.gamma, self.ppo.lam)
        if self.ppo.whiten_advantages:
            advantages = whiten(advantages, mask)
        out.update(advantages=advantages, returns=returns, old_values=values)
        count = mask.sum().clamp(min=1)
        metrics = self._metrics[mode]
        metrics["ppo/value_mean"].append(self.accelerator.gather((values.sum() / count).reshape(1)).mean().item())
        metrics["ppo/return_mean"].append(self.accelerator.gather((returns.sum() / count).reshape(1)).mean().item())
        return out

    def _prepare_inputs(self, generation_batch):
        self._batch = super()._prepare_inputs(generation_batch)  # the micro-batch the critic trains on too
        return self._batch

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The policy's step (TRL's: loss and backward), then the critic's own forward and backward: the two
        graphs are never held at once, so the peak memory is the larger of them, not their sum (SmolLM2-135M on
        CPU: the summed loss ran out of 24 GB at 16 completions of 128 tokens)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        with self.compute_loss_context_manager():
            critic = self._critic_loss(self._batch, "train") * self.ppo.vf_coef
        # TRL scales the policy loss for gradient accumulation itself (HF's auto-scaling is off): match it.
        critic = critic / self.current_gradient_accumulation_steps
        self.accelerator.backward(critic)
        return loss + critic.detach()

    def _critic_loss(self, inputs, mode: str) -> torch.Tensor:
        mask = inputs["completion_mask"].float()
        values = completion_values(self.value_model, inputs)
        vf_loss, clipfrac = value_loss(values, inputs["old_values"], inputs["returns"], mask,
                                       self.ppo.cliprange_value)
        metrics = self._metrics[mode]
        metrics["ppo/value_loss"].append(self.accelerator.gather(vf_loss.detach().reshape(1)).mean().item())
        metrics["ppo/value_clipfrac"].append(self.accelerator.gather(clipfrac.reshape(1)).mean().item())
        return vf_loss

    # -- checkpoints carry the critic ------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:  # before TRL's files: trainer_state.json, written last, marks it complete
            self.accelerator.unwrap_model(self.value_model).save_pretrained(folder / VALUE_DIR,
                                                                            safe_serialization=True)
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        weights = Path(checkpoint) / VALUE_DIR / "model.safetensors" if checkpoint is not None else None
        if weights is not None and not weights.is_file():  # before the optimizer's state, whose groups differ
            raise ValueError(f"{checkpoint} has no {VALUE_DIR}/model.safetensors: it was not written by a PPO run "
                             "(train.algorithm=ppo); resume it with its own algorithm or set train.resume=never")
        super()._load_optimizer_and_scheduler(checkpoint)
        if weights is not None:
            from safetensors.torch import load_file

            self.accelerator.unwrap_model(self.value_model).load_state_dict(load_file(weights, device="cpu"))
