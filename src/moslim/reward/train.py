"""Training the multi-head reward model: a plain PyTorch loop that reads as a story.

# b = batch, k = objectives (heads), c = classes (padded to the largest head)

1. Read the objective set, the labelled examples, build the model on the backbone (LoRA / frozen).
2. Each optimizer step takes ``grad_accum`` micro-batches; micro-batch m is a fixed slice of epoch
   ``m // batches_per_epoch``'s permutation, drawn from ``seed + epoch``. The data order is therefore
   a function of the step alone, and a resumed run sees exactly the batches an uninterrupted one would.
3. Every ``save_every`` steps a checkpoint (weights, optimizer, schedule, RNG, step) is written to a
   temporary folder and renamed to ``output_dir/checkpoint``: a run killed at any point finds either
   the previous complete checkpoint or the new one.
4. At the end: the model (LoRA merged) and tokenizer go to ``output_dir``, it is evaluated on the held-
   out data, and ``output_dir/moslim_run.json`` (metrics, wall time) is written last: its presence
   means the stage is done.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from moslim.config import save_config, to_dict
from moslim.paths import atomic_folder
from moslim.reward.config import ModelSection, RewardTrainConfig
from moslim.reward.data import (
    encode_examples,
    label_tensor,
    load_examples,
    load_pairs,
    read_factors,
    read_objectives,
)
from moslim.reward.encoding import PairEncoder, model_batch, pad_id_of, question_ends
from moslim.reward.evaluate import evaluate_reward_model, head_metrics
from moslim.reward.frozen import FrozenPrefix, freeze_prefix
from moslim.reward.losses import IGNORE, balanced_class_weights, pairwise_loss, per_head_losses
from moslim.reward.model import MultiHeadRewardModel

log = logging.getLogger(__name__)

RUN_FILE = "moslim_run.json"
CHECKPOINT = "checkpoint"


def build_model(section: ModelSection, backbone_path: str, tokenizer: Any, objectives, labelling, seed: int,
                factors=None) -> MultiHeadRewardModel:
    from transformers import AutoConfig

    from moslim.reward.model import is_decoder_config

    input_format = section.input_format
    if input_format is None and is_decoder_config(AutoConfig.from_pretrained(backbone_path)):
        input_format = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    model = MultiHeadRewardModel.from_backbone(
        backbone_path, objectives, pooling=section.pooling, input_format=input_format, labelling=labelling,
        head_dropout=section.head_dropout, seed=seed, factored=section.factored,
        factors=factors if section.factored else None, request_at_question_end=section.request_at_question_end)
    if section.max_layers:
        truncate_layers(model, section.max_layers)
    if section.freeze_backbone:
        model.backbone.requires_grad_(False)
    if section.freeze_layers:
        freeze_prefix(model.backbone, section.freeze_layers)
    if section.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = section.lora
        model.backbone = get_peft_model(model.backbone, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules))
    return model


def truncate_layers(model: MultiHeadRewardModel, n: int) -> None:
    """Keep the backbone's first ``n`` transformer layers; the saved config then builds ``n`` layers."""
    config = model.config.text_config
    total = config.num_hidden_layers
    if not 1 <= n <= total:
        raise ValueError(f"model.max_layers {n} must be between 1 and the backbone's {total} layers")
    stacks = [m for m in model.backbone.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == total]
    if not stacks:
        raise ValueError(f"model.max_layers: found no list of {total} layers in {type(model.backbone).__name__}")
    del stacks[0][n:]
    config.num_hidden_layers = n
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:n]


def lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
    return factor


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


def save_checkpoint(out: Path, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Write the checkpoint into a temp folder, then swap it in with os.replace (never half-written)."""
    with atomic_folder(out / CHECKPOINT) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict[str, Any] | None:
    """Restore weights, optimizer, schedule and RNG from a checkpoint folder; None when it holds none."""
    if not (folder / "trainer_state.json").exists():
        return None
    load_model(model, str(folder / "model.safetensors"))
    # Our own checkpoint; weights_only=True still refuses arbitrary pickled objects.
    extra = torch.load(folder / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    return json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))


def _tensorboard(config: RewardTrainConfig, out: Path):
    if "tensorboard" not in config.train.report_to:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("report_to tensorboard: tensorboard is not installed; pip install tensorboard")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def train_reward_model(config: RewardTrainConfig, on_step: Callable[[int], None] | None = None) -> Path:
    """Train (or resume) the reward model described by ``config``; returns ``config.output_dir``.

    ``on_step(step)`` is called after each optimizer step (and its checkpoint, if one is due).
    """
    from transformers import AutoTokenizer

    from moslim.models import resolve
    from moslim.reward.scorer import RewardScorer, default_device, predict_probs

    config.check_inputs()
    out = Path(config.output_dir)
    if (out / RUN_FILE).exists() and config.train.resume == "auto" and _same_config(out, config):
        log.info("%s already holds a finished run with this config; nothing to do", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).unlink(missing_ok=True)
    save_config(config, out / "train_config.yaml")
    cfg, t = config.data, config.train
    device = torch.device(t.device) if t.device else default_device()
    torch.manual_seed(t.seed)

    # 1. Objectives, data, model.
    objectives, labelling = read_objectives(cfg.objectives)
    factors = read_factors(cfg.objectives)
    if config.model.factored and factors is None:
        raise ValueError(f"model.factored: {config.model.factored!r} needs the objectives file {cfg.objectives} to "
                         f"name its two factors in a `factors` section (request factor, then answer factor)")
    backbone_path = resolve(config.model.backbone)
    tokenizer = AutoTokenizer.from_pretrained(backbone_path)
    model = build_model(config.model, backbone_path, tokenizer, objectives, labelling, t.seed,
                        factors if config.model.factored else None).to(device)
    # What the labels may name: the objectives, then the file's factors; what trains: the model's heads (the
    # factors too when a head is factored, else their labels are read and left out).
    readable, heads = objectives.extended(factors), model.training_objectives
    positions = getattr(model.config.text_config, "max_position_embeddings", None)
    if positions and cfg.max_length > positions:
        raise ValueError(f"data.max_length {cfg.max_length} exceeds the backbone's {positions} positions; "
                         f"set data.max_length <= {positions}")
    encoder = PairEncoder(tokenizer, model.config.input_format, cfg.max_length)
    model.config.train_max_length = cfg.max_length
    pad_id = pad_id_of(tokenizer)
    train_examples = load_examples(cfg.train, readable, cfg.max_train_examples, t.seed)
    if not train_examples:
        raise ValueError(f"{cfg.train}: no training examples")
    train_encoded = encode_examples(train_examples, encoder)
    train_labels = label_tensor(train_examples, heads, strict=False)
    eval_examples = load_examples(cfg.eval, readable, cfg.max_eval_examples, t.seed) if cfg.eval else []
    eval_encoded = encode_examples(eval_examples, encoder)
    eval_labels = label_tensor(eval_examples, heads, strict=False)[:, : len(objectives)]
    num_classes = heads.num_classes
    options: dict[str, Any] = {"label_smoothing": t.label_smoothing, "ordinal_weight": t.ordinal_weight}
    if t.class_weights == "balanced":
        options["class_weights"] = balanced_class_weights(train_labels, num_classes)
    train_pairs = load_pairs(cfg.train_pairs, objectives, cfg.max_train_pairs, t.seed) if t.pair_weight else []
    pair_encoded = [(encoder.encode(p.prompt, p.chosen), encoder.encode(p.prompt, p.rejected)) for p in train_pairs]
    pair_heads = torch.tensor([objectives.index(p.objective) for p in train_pairs], dtype=torch.long)
    prefix = _frozen_prefix(config, model, pad_id, device, train_encoded, pair_encoded)

    # 2. Optimizer and schedule; the heads may learn faster than the pretrained backbone.
    plan = BatchPlan(len(train_encoded), t.batch_size, t.seed, lengths=[len(e.input_ids) for e in train_encoded],
                     buckets=t.length_buckets)
    pair_plan = BatchPlan(len(pair_encoded), t.pair_batch_size, t.seed + 1) if pair_encoded else None
    steps_per_epoch = math.ceil(plan.per_epoch / t.grad_accum)
    total = t.max_steps if t.max_steps is not None else max(1, math.ceil(t.epochs * steps_per_epoch))
    head_params = list(model.heads.parameters())
    body_params = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": head_params, "lr": t.head_learning_rate or t.learning_rate}]
    if body_params:
        groups.append({"params": body_params, "lr": t.learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t.schedule, int(t.warmup_ratio * total), total))
    state = {"step": 0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "history": []}
    checkpoint = {"auto": out / CHECKPOINT, "never": None}.get(t.resume, Path(t.resume))
    resumed = load_checkpoint(checkpoint, model, optimizer, scheduler) if checkpoint is not None else None
    if resumed is not None:
        state = resumed
        log.info("resuming from %s at step %d", checkpoint, state["step"])
    log.info("training %s on %d examples (%d eval) for %d steps of %d x %d, device %s", config.model.backbone,
             len(train_encoded), len(eval_encoded), total, t.batch_size, t.grad_accum, device)

    # 3. The loop.
    writer = _tensorboard(config, out)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.bf16)
    progress = _progress(t.progress, total, state["step"])
    window = _Window(len(heads))
    started, cpu_started = time.perf_counter(), time.process_time()
    model.train()
    for step in range(state["step"], total):
        for j in range(t.grad_accum):
            rows = plan.indices(step * t.grad_accum + j)
            labels = train_labels[rows].to(device)
            with autocast:
                logits = _logits(model, prefix, "train", rows, train_encoded, pad_id, device)
            losses, _ = per_head_losses(logits, labels, num_classes, **options)
            loss = losses.sum()
            if pair_plan is not None:
                pair_rows = pair_plan.indices(step * t.grad_accum + j)
                with autocast:
                    both = _logits(model, prefix, "pairs", pair_rows, pair_encoded, pad_id, device)
                pair_loss, pair_acc = pairwise_loss(both[: len(pair_rows)], both[len(pair_rows):],
                                                    pair_heads[pair_rows].to(device), num_classes)
                loss = loss + t.pair_weight * pair_loss
                window.add_pairs(float(pair_loss.detach()), pair_acc)
            (loss / t.grad_accum).backward()
            window.add(losses.detach().cpu(), logits.detach().float().cpu(), labels.cpu())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if t.log_every and done % t.log_every == 0 or done == total:
            record = {"step": done, "lr": scheduler.get_last_lr()[-1], "grad_norm": float(grad_norm), **window.flush()}
            state["history"].append(record)
            log.info("step %d/%d %s", done, total, _format(record, heads.names))
            _write_scalars(writer, "train", record, done)
            if progress is not None:
                progress.set_postfix_str(_format(record, heads.names), refresh=False)
        if t.eval_every and done % t.eval_every == 0 and eval_encoded:
            metrics = head_metrics(predict_probs(model, eval_encoded, pad_id, t.batch_size * 2, device),
                                   eval_labels, objectives)
            record = {"step": done, **{f"eval_acc_{k}": v.get("accuracy", float("nan")) for k, v in metrics.items()}}
            state["history"].append(record)
            log.info("eval at step %d: %s", done, _format(record, objectives.names))
            _write_scalars(writer, "eval", record, done)
        if progress is not None:
            progress.update(1)
        if t.save_every and done % t.save_every == 0 and done < total:
            _add_time(state, started, cpu_started, step=done)
            started, cpu_started = time.perf_counter(), time.process_time()
            save_checkpoint(out, model, optimizer, scheduler, state)
        if on_step is not None:
            on_step(done)
    _add_time(state, started, cpu_started, step=total)
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()

    # 4. Save, evaluate, and mark the stage done.
    if config.model.lora.enabled:
        model.backbone = model.backbone.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    results: dict[str, Any] = {"heads": {}, "pairs": {}}
    if eval_examples or cfg.pairs:
        scorer = RewardScorer(model, tokenizer, device=device, batch_size=t.batch_size * 2, max_length=cfg.max_length)
        pairs = load_pairs(cfg.pairs, objectives, cfg.max_pairs, t.seed) if cfg.pairs else None
        results = evaluate_reward_model(scorer, eval_examples or None, pairs, out / "eval")
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    summary = {"stage": "rm", "output_dir": str(out), "backbone": config.model.backbone, "steps": total,
               "train_examples": len(train_encoded), "train_pairs": len(pair_encoded),
               "epochs": round(total * t.grad_accum * t.batch_size / len(train_encoded), 2),
               "cache_seconds": round(prefix.seconds, 1) if prefix is not None else None,
               "train_seconds": round(state["train_seconds"], 3),
               # CPU seconds of this process (all threads): on a shared machine, wall time says little
               "train_cpu_seconds": round(state.get("train_cpu_seconds", 0.0), 1), "threads": torch.get_num_threads(),
               "history": state["history"], "metrics": _summary_metrics(results), "config": to_dict(config)}
    tmp = out / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, out / RUN_FILE)
    log.info("reward model saved to %s (%.1f s of training)", out, state["train_seconds"])
    return out


class _Cached:
    """The frozen prefix and its cached states for the training rows ("train") and the pairs ("pairs")."""

    def __init__(self, prefix: FrozenPrefix, states: dict[str, list], seconds: float):
        self.prefix, self.states, self.seconds = prefix, states, seconds


def _frozen_prefix(config: RewardTrainConfig, model, pad_id: int, device, train_encoded, pair_encoded
                   ) -> _Cached | None:
    """Cache the frozen layers' output for every training row and pair (model.freeze_layers + train.cache_frozen).

    Checked against a plain forward on a few rows first; a backbone the cache cannot stand in for trains
    the plain way, with a warning.
    """
    t, n = config.train, config.model.freeze_layers
    if not n or not t.cache_frozen:
        return None
    start = time.perf_counter()
    prefix = FrozenPrefix(model, n, pad_id, device, batch_size=max(16, t.batch_size * 2), autocast=t.bf16)
    try:
        sample = train_encoded[:4]
        prefix.check(sample, prefix.encode(sample), atol=5e-2 if t.bf16 else 1e-3)
    except ValueError as err:
        log.warning("train.cache_frozen: %s; training without the cache", err)
        return None
    pairs_flat = [e for pair in pair_encoded for e in pair]
    progress = _progress(t.progress, len(train_encoded) + len(pairs_flat), 0, desc="rm cache", unit="seq")
    update = progress.update if progress is not None else None
    states = {"train": prefix.encode(train_encoded, update)}
    flat = prefix.encode(pairs_flat, update) if pairs_flat else []
    states["pairs"] = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(pair_encoded))]
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - start
    log.info("cached the first %d layers' output for %d sequences in %.0f s", n,
             len(train_encoded) + len(pairs_flat), seconds)
    return _Cached(prefix, states, seconds)


def _logits(model, cached: _Cached | None, kind: str, rows: list[int], encoded: list, pad_id: int, device):
    """Training logits (b, k', c) for ``rows`` of ``encoded`` (see ``MultiHeadRewardModel.training_logits``);
    pairs give chosen rows then rejected rows (2b, k', c)."""
    if kind == "pairs":
        if cached is not None:
            pairs = [cached.states["pairs"][i] for i in rows]
            items = [encoded[i][0] for i in rows] + [encoded[i][1] for i in rows]
            return cached.prefix.top_logits([c for c, _ in pairs] + [r for _, r in pairs], question_ends(items))
        items = [encoded[i][0] for i in rows] + [encoded[i][1] for i in rows]
    else:
        if cached is not None:
            return cached.prefix.top_logits([cached.states["train"][i] for i in rows],
                                            question_ends([encoded[i] for i in rows]))
        items = [encoded[i] for i in rows]
    batch = model_batch(items, pad_id, model.needs_question_end)
    return model.training_logits(model(**{k: v.to(device) for k, v in batch.items()}))


def _add_time(state: dict[str, Any], started: float, cpu_started: float, step: int) -> None:
    state["step"] = step
    state["train_seconds"] += time.perf_counter() - started
    state["train_cpu_seconds"] = state.get("train_cpu_seconds", 0.0) + time.process_time() - cpu_started


class _Window:
    """Loss and per-head accuracy over the steps since the last log line."""

    def __init__(self, k: int):
        self.k = k
        self.loss, self.batches = 0.0, 0
        self.correct, self.count = torch.zeros(k), torch.zeros(k)
        self.pair_loss: list[float] = []
        self.pair_acc: list[float] = []

    def add(self, losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += float(losses.sum())
        self.batches += 1
        labelled = labels != IGNORE
        self.correct += ((logits.argmax(-1) == labels) & labelled).sum(0).float()
        self.count += labelled.sum(0).float()

    def add_pairs(self, loss: float, accuracy: float) -> None:
        self.pair_loss.append(loss)
        self.pair_acc.append(accuracy)

    def flush(self) -> dict[str, float]:
        record = {"loss": self.loss / max(1, self.batches)}
        accuracy = self.correct / self.count.clamp(min=1)
        record.update({f"acc_{i}": float(a) for i, a in enumerate(accuracy)})
        if self.pair_loss:
            record["pair_loss"] = sum(self.pair_loss) / len(self.pair_loss)
            record["pair_acc"] = sum(self.pair_acc) / len(self.pair_acc)
        self.__init__(self.k)
        return record


def _format(record: dict[str, Any], names: list[str]) -> str:
    parts = []
    for key, value in record.items():
        if key == "step":
            continue
        if key.startswith("acc_"):
            key = f"acc[{names[int(key[4:])]}]"
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def _write_scalars(writer, prefix: str, record: dict[str, Any], step: int) -> None:
    if writer is None:
        return
    for key, value in record.items():
        if key != "step" and isinstance(value, int | float):
            writer.add_scalar(f"{prefix}/{key}", value, step)


def _progress(enabled: bool, total: int, initial: int, desc: str = "rm train", unit: str = "step"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)


def _summary_metrics(results: dict[str, Any]) -> dict[str, Any]:
    heads = {name: {k: v for k, v in m.items() if k != "confusion"} for name, m in results["heads"].items()}
    return {"heads": heads, "pairs": results["pairs"], "pairs_by_source": results.get("pairs_by_source", {})}


def _same_config(out: Path, config: RewardTrainConfig) -> bool:
    try:
        summary = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return summary.get("config") == json.loads(json.dumps(to_dict(config)))
