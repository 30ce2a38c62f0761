"""The reward model's training step on transformers' ``Trainer``: batches, loss, logging.

# b = examples, p = pairs, t = tokens, d = hidden, k = objectives (heads), k' = heads + factors,
# c = classes (padded to the largest head)

Trainer brings the schedule, gradient accumulation, checkpoints (``checkpoint-N`` with optimizer, schedule
and RNG states; trainer_state.json written last), ``report_to`` and accelerate / DeepSpeed / FSDP. This
module brings what is particular to a multi-head reward model:

- **One batch, examples and pairs.** Dataset rows are the labelled examples, then the preference pairs.
  :class:`TrainBatches` gives each micro-batch ``batch_size`` examples and ``pair_batch_size`` pairs, and
  :func:`collate_rows` stacks the examples, the pairs' chosen answers and their rejected answers into one
  padded batch of b + 2p sequences: one forward pass scores all of them.
- **Batches are a function of (epoch, position).** A resumed run, which Trainer fast-forwards by skipping
  the batches already trained on, sees exactly the batches an uninterrupted run would.
- **The frozen-layer cache.** Rows may carry the frozen lower layers' output (:mod:`moslim.reward.frozen`);
  the batch then holds ``inputs_embeds`` and the model runs its top layers only.
- **The loss** (:meth:`RewardTrainer.compute_loss`): the sum over heads of the masked cross-entropy (label
  smoothing, ordinal term, class weights), plus ``pair_weight`` x the Bradley-Terry loss of the pairs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from moslim.objectives import ObjectiveSet
from moslim.reward.encoding import Encoded, model_batch, question_ends
from moslim.reward.frozen import only_layers, pad_states
from moslim.reward.losses import IGNORE, pairwise_loss, per_head_losses

log = logging.getLogger(__name__)


@dataclass
class Row:
    """A labelled example (``labels`` (k'), IGNORE where unlabelled) or a preference pair (``pair_head``: the
    objective it is about; ``sequences`` = chosen, rejected). ``states``: the frozen layers' cached output per
    sequence, (t_i, d) each, or None."""

    sequences: list[Encoded]
    states: list[torch.Tensor] | None = None
    labels: torch.Tensor | None = None
    pair_head: int | None = None


class BatchPlan:
    """Micro-batch m -> example indices: epoch e = m // per_epoch, from a permutation seeded by seed + e.

    With ``lengths``, each run of ``buckets`` batches of the permutation is sorted by length before it is
    cut, and the batches are then shuffled: rows of similar length share a batch (little padding), the
    order stays random, and it is still a function of the step alone (exact resume).
    """

    def __init__(self, n: int, batch_size: int, seed: int, lengths: list[int] | None = None, buckets: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.lengths, self.buckets = lengths, buckets
        self.per_epoch = math.ceil(n / batch_size)
        self._epoch, self._batches = -1, []

    def indices(self, m: int) -> list[int]:
        epoch, pos = divmod(m, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            generator = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.n, generator=generator).tolist()
            if self.lengths is not None and self.buckets > 1:
                chunk = self.batch_size * self.buckets
                perm = [i for start in range(0, self.n, chunk)
                        for i in sorted(perm[start:start + chunk], key=lambda i: self.lengths[i])]
            batches = [perm[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
            if self.lengths is not None and self.buckets > 1:
                batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
            self._batches = batches
        return self._batches[pos]


class TrainBatches(torch.utils.data.Sampler):
    """Dataset indices of each micro-batch of an epoch: examples from ``examples``, plus pairs (dataset indices
    after the examples) from ``pairs``, drawn by the global micro-batch number so they cycle on their own.

    ``set_epoch`` (called by Trainer before each epoch, also the one a resumed run starts in) picks the epoch.
    No ``batch_size`` attribute: accelerate then shards these batches whole, one process after another.
    """

    def __init__(self, examples: BatchPlan, pairs: BatchPlan | None):
        self.examples, self.pairs, self.epoch = examples, pairs, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.examples.per_epoch

    def __iter__(self):
        for position in range(self.examples.per_epoch):
            m = self.epoch * self.examples.per_epoch + position
            rows = self.examples.indices(m)
            if self.pairs is not None:
                rows = rows + [self.examples.n + i for i in self.pairs.indices(m)]
            yield rows


def collate_rows(rows: list[Row], pad_id: int, question_end: bool) -> dict[str, torch.Tensor]:
    """Rows -> one right-padded batch: the examples, then the pairs' chosen answers, then their rejected ones.

    Keys: ``input_ids`` (or ``inputs_embeds`` (b + 2p, t, d) from the cache), ``attention_mask``
    (b + 2p, t), ``question_end`` when the model reads it, ``labels`` (b, k'), ``pair_heads`` (p,).
    """
    examples = [r for r in rows if r.pair_head is None]
    pairs = [r for r in rows if r.pair_head is not None]
    order = [(r, 0) for r in examples + pairs] + [(r, 1) for r in pairs]
    items = [r.sequences[i] for r, i in order]
    if rows[0].states is not None:
        hidden, mask = pad_states([r.states[i] for r, i in order])
        batch = {"inputs_embeds": hidden, "attention_mask": mask}
        if question_end:
            batch["question_end"] = question_ends(items)
    else:
        batch = model_batch(items, pad_id, question_end)
    batch["labels"] = torch.stack([r.labels for r in examples])
    batch["pair_heads"] = torch.tensor([r.pair_head for r in pairs], dtype=torch.long)
    return batch


class HeadMeter:
    """Per-head accuracy and the pair figures over the micro-batches since the last log line."""

    def __init__(self, names: list[str]):
        self.names = names
        self.sums: torch.Tensor | None = None  # correct (k'), labelled (k'), pair loss, pair accuracy, pair batches

    def add(self, logits: torch.Tensor, labels: torch.Tensor, pair: tuple[float, float] | None) -> None:
        """logits (b, k', c), labels (b, k'); ``pair``: the batch's pair loss and accuracy, if it had pairs."""
        labelled = labels != IGNORE  # (b, k')
        correct = ((logits.argmax(-1) == labels) & labelled).sum(0).float()
        pair_sums = correct.new_tensor([pair[0], pair[1], 1.0] if pair else [0.0, 0.0, 0.0])
        sums = torch.cat([correct, labelled.sum(0).float(), pair_sums])
        self.sums = sums if self.sums is None else self.sums + sums

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """The figures summed over all processes by ``reduce``; then starts a new window."""
        if self.sums is None:
            return {}
        sums, self.sums = reduce(self.sums).cpu(), None
        k = len(self.names)
        accuracy = sums[:k] / sums[k:2 * k].clamp(min=1)
        record = {f"acc_{name}": float(a) for name, a in zip(self.names, accuracy)}
        if sums[-1] > 0:
            record["pair_loss"], record["pair_acc"] = float(sums[-3] / sums[-1]), float(sums[-2] / sums[-1])
        return record


class RewardTrainer(Trainer):
    """Trainer for :class:`~moslim.reward.model.MultiHeadRewardModel` on :class:`Row` datasets.

    ``loss_options``: :func:`~moslim.reward.losses.per_head_losses`'s keywords; ``frozen_layers``: the number of
    cached lower layers the top-layer forward skips; ``batches``: the training micro-batches.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a micro-batch mean: Trainer divides by grad_accum

    def __init__(self, *args, batches: TrainBatches, heads: ObjectiveSet, loss_options: dict, pair_weight: float,
                 head_learning_rate: float | None, frozen_layers: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.num_levels = batches, heads.num_levels
        self.loss_options, self.pair_weight = loss_options, pair_weight
        self.head_learning_rate, self.frozen_layers = head_learning_rate, frozen_layers
        self.meter = HeadMeter(heads.names)

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        loader = torch.utils.data.DataLoader(self.train_dataset, batch_sampler=self.batches,
                                             collate_fn=self.data_collator, num_workers=0)
        return self.accelerator.prepare(loader)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """AdamW with two groups: the freshly initialised heads at ``head_learning_rate``, the backbone's
        trainable weights at ``learning_rate``; the schedule scales both."""
        if self.optimizer is None:
            model = model if model is not None else self.model
            heads, body = [], []
            for name, param in model.named_parameters():
                if param.requires_grad:
                    (heads if "heads" in name.split(".") else body).append(param)
            groups = [{"params": heads, "lr": self.head_learning_rate or self.args.learning_rate}]
            if body:
                groups.append({"params": body, "lr": self.args.learning_rate})
            self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, weight_decay=self.args.weight_decay)
        return self.optimizer

    def _forward(self, model, inputs: dict[str, torch.Tensor]):
        if "inputs_embeds" not in inputs:
            return model(**inputs)
        with only_layers(self.accelerator.unwrap_model(model).backbone, self.frozen_layers):
            return model(**inputs)  # the cached states enter layer `frozen_layers`

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, pair_heads = inputs.pop("labels"), inputs.pop("pair_heads")
        output = self._forward(model, inputs)
        logits = self.accelerator.unwrap_model(model).training_logits(output)  # (b + 2p, k', c)
        b, p = labels.shape[0], pair_heads.shape[0]
        losses, _ = per_head_losses(logits[:b], labels, self.num_levels, **self.loss_options)
        loss = losses.sum()
        pair = None
        if p:
            pair = pairwise_loss(logits[b:b + p], logits[b + p:], pair_heads, self.num_levels)
            loss = loss + self.pair_weight * pair[0]
        if model.training:
            self.meter.add(logits[:b].detach(), labels, (float(pair[0]), pair[1]) if pair else None)
        return (loss, output) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation: (None, logits (b, k, c), labels (b, k)) of the examples, for :func:`eval_metrics`."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.pop("labels")
        inputs.pop("pair_heads")
        with torch.no_grad():
            logits = self._forward(model, inputs).logits.float()
        return None, logits, labels[:, : logits.shape[1]]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log line (called on every process): add the per-head figures
            logs.update(self.meter.flush(lambda t: self.accelerator.reduce(t, reduction="sum")))
        super().log(logs, start_time)


def eval_metrics(objectives: ObjectiveSet) -> Callable:
    """Trainer's ``compute_metrics``: each objective's accuracy on the evaluation rows (``eval_acc_<name>``)."""
    from moslim.reward.evaluate import head_metrics

    def compute(prediction) -> dict[str, float]:
        probs = torch.softmax(torch.as_tensor(prediction.predictions), dim=-1)  # (n, k, c)
        metrics = head_metrics(probs, torch.as_tensor(prediction.label_ids), objectives)
        return {f"acc_{name}": m.get("accuracy", float("nan")) for name, m in metrics.items()}
    return compute


class Clock(TrainerCallback, ExportableState):
    """Wall and CPU seconds of training, summed over a run and the runs that resume it (kept in checkpoints)."""

    def __init__(self):
        self.seconds, self.cpu_seconds = 0.0, 0.0
        self._start: tuple[float, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = (time.perf_counter(), time.process_time())

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds, self.cpu_seconds = self.totals()
        self._start = None

    def totals(self) -> tuple[float, float]:
        if self._start is None:
            return self.seconds, self.cpu_seconds
        return (self.seconds + time.perf_counter() - self._start[0],
                self.cpu_seconds + time.process_time() - self._start[1])

    def state(self) -> dict:
        seconds, cpu_seconds = self.totals()
        return {"args": {}, "attributes": {"seconds": seconds, "cpu_seconds": cpu_seconds}}


class Progress(TrainerCallback):
    """One log line per logging step (loss and per-head accuracy), a progress bar showing the same figures,
    and a last step that always logs and never checkpoints (the final model is saved right after)."""

    def __init__(self, bar: bool):
        self.show_bar, self.bar = bar, None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.show_bar and state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="rm train", unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log, control.should_save = True, False
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = {k: v for k, v in logs.items() if k in ("loss", "grad_norm", "learning_rate", "pair_loss", "pair_acc")
                 or k.startswith(("acc_", "eval_acc_"))}
        if not shown:
            return
        text = " ".join(f"{k}={v:.3g}" for k, v in shown.items())
        log.info("step %d/%d %s", state.global_step, state.max_steps, text)
        if self.bar is not None and "loss" in logs:
            self.bar.set_postfix_str(text, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
