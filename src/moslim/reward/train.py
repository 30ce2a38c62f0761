"""Training the multi-head reward model: a recipe on transformers' Trainer that reads as a story.

1. Read the objective set, the labelled examples (and preference pairs); build the model on the backbone
   (truncated, LoRA, frozen lower layers).
2. With ``model.freeze_layers`` and ``train.cache_frozen``: run the frozen layers once over every training
   sequence and keep their output, so each step runs only the top layers and the heads.
3. Train with :class:`~moslim.reward.trainer.RewardTrainer`. Trainer brings the schedule, gradient
   accumulation, logging (``report_to``), accelerate / DeepSpeed / FSDP (the same code runs in one process
   or under ``accelerate launch``), and checkpoints every ``save_every`` steps in ``output_dir/checkpoint-N``
   with trainer_state.json written last. ``resume: auto`` continues from the newest complete one; batches
   that are a function of the step and the saved RNG states make the resumed run end with the weights an
   uninterrupted one would.
4. At the end: the model (LoRA merged) and tokenizer go to ``output_dir``, it is evaluated on the held-
   out data, and ``output_dir/moslim_run.json`` (metrics, wall time) is written last: its presence
   means the stage is done.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from moslim.config import save_config, to_dict
from moslim.paths import last_complete_checkpoint
from moslim.precision import resolve_bf16
from moslim.reward.config import ModelSection, RewardTrainConfig, TrainSection
from moslim.reward.data import (
    encode_examples,
    label_tensor,
    load_examples,
    load_pairs,
    read_factors,
    read_objectives,
)
from moslim.reward.encoding import PairEncoder, pad_id_of
from moslim.reward.evaluate import evaluate_reward_model
from moslim.reward.frozen import FrozenPrefix, freeze_prefix
from moslim.reward.losses import balanced_class_weights
from moslim.reward.model import MultiHeadRewardModel
from moslim.reward.trainer import (
    BatchPlan,
    Clock,
    Progress,
    RewardTrainer,
    Row,
    TrainBatches,
    collate_rows,
    eval_metrics,
)

log = logging.getLogger(__name__)

RUN_FILE = "moslim_run.json"
# train.schedule -> transformers' lr_scheduler_type (each after a linear warm-up)
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def resolve_input_format(input_format: str | None, backbone_path: str, tokenizer: Any) -> str | None:
    """The recipe's ``model.input_format``; when None, a decoder's default (chat, or plain without a chat
    template), and None for an encoder (the model's pair format)."""
    from transformers import AutoConfig

    from moslim.reward.model import is_decoder_config

    if input_format is None and is_decoder_config(AutoConfig.from_pretrained(backbone_path)):
        input_format = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return input_format


def build_model(section: ModelSection, backbone_path: str, tokenizer: Any, objectives, labelling, seed: int,
                factors=None) -> MultiHeadRewardModel:
    input_format = resolve_input_format(section.input_format, backbone_path, tokenizer)
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


def training_arguments(t: TrainSection, out: Path, evaluate: bool):
    """transformers' TrainingArguments for the ``train`` section (checked before any model loads)."""
    from transformers import TrainingArguments
    from transformers.integrations import get_reporting_integration_callbacks

    others = [name for name in t.report_to if name not in ("tensorboard", "none")]
    try:
        get_reporting_integration_callbacks(others)
    except ValueError as err:
        raise ValueError(f"train.report_to: {err}") from None
    use_cpu = t.device == "cpu" or not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out), seed=t.seed, num_train_epochs=t.epochs, max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=2 * t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        lr_scheduler_type=SCHEDULES[t.schedule], warmup_steps=t.warmup_ratio, max_grad_norm=t.max_grad_norm,
        bf16=resolve_bf16(t.bf16, "cpu" if use_cpu else "cuda", "train.bf16"), use_cpu=use_cpu,
        logging_strategy="steps" if t.log_every else "no", logging_steps=t.log_every or 1,
        save_strategy="steps" if t.save_every else "no", save_steps=t.save_every or 1, save_total_limit=1,
        eval_strategy="steps" if evaluate else "no", eval_steps=t.eval_every or None,
        report_to=others or "none", disable_tqdm=True, restore_callback_states_from_checkpoint=True,
        remove_unused_columns=False, dataloader_num_workers=0)


def _tensorboard(report_to: list[str], out: Path, main: bool) -> list[TrainerCallback]:
    """Trainer's TensorBoard callback writing to ``output_dir/tensorboard`` (the main process only)."""
    if "tensorboard" not in report_to or not main:
        return []
    from torch.utils.tensorboard import SummaryWriter  # tensorboard is a dependency
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(str(out / "tensorboard")))]


def _prepare_output(out: Path, config: RewardTrainConfig) -> None:
    """The output folder with the run's config; drops what must not be resumed from: every checkpoint with
    ``resume: never``, else the folders a save that was killed half-way left behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).unlink(missing_ok=True)
    save_config(config, out / "train_config.yaml")
    for folder in out.glob("checkpoint-*"):
        if config.train.resume == "never" or not (folder / "trainer_state.json").exists():
            shutil.rmtree(folder)


def train_reward_model(config: RewardTrainConfig, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train (or resume) the reward model described by ``config``; returns ``config.output_dir``.

    ``callbacks``: extra transformers ``TrainerCallback`` objects (tests use them to stop a run mid-way).
    """
    from transformers import AutoTokenizer, PrinterCallback

    from moslim.models import resolve

    config.check_inputs()
    out = Path(config.output_dir)
    cfg, t = config.data, config.train
    args = training_arguments(t, out, evaluate=bool(cfg.eval and t.eval_every))
    if (out / RUN_FILE).exists() and t.resume == "auto" and _same_config(out, config):
        log.info("%s already holds a finished run with this config; nothing to do", out)
        return out
    with args.main_process_first(local=False, desc="output folder"):
        if args.process_index == 0:
            _prepare_output(out, config)
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
                        factors if config.model.factored else None).to(args.device)
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
    eval_labels = label_tensor(eval_examples, heads, strict=False)
    options: dict[str, Any] = {"label_smoothing": t.label_smoothing, "ordinal_weight": t.ordinal_weight}
    if t.class_weights == "balanced":
        options["class_weights"] = balanced_class_weights(train_labels, heads.num_levels,
                                                          _balanced_heads(t.balanced_heads, heads.names))
    train_pairs = load_pairs(cfg.train_pairs, objectives, cfg.max_train_pairs, t.seed) if t.pair_weight else []
    pair_encoded = [(encoder.encode(p.prompt, p.chosen), encoder.encode(p.prompt, p.rejected)) for p in train_pairs]

    # 2. The frozen layers' output, once per training sequence: the examples, then each pair's two answers.
    sequences = train_encoded + [e for pair in pair_encoded for e in pair]
    states, cache_seconds = _cache_frozen(config, model, pad_id, args.device, sequences, bf16=args.bf16)
    rows = [Row([e], [states[i]] if states else None, labels=train_labels[i]) for i, e in enumerate(train_encoded)]
    n = len(train_encoded)
    rows += [Row(list(pair), states[n + 2 * j: n + 2 * j + 2] if states else None,
                 pair_head=objectives.index(p.objective)) for j, (pair, p) in enumerate(zip(pair_encoded, train_pairs))]
    eval_rows = [Row([e], labels=eval_labels[i]) for i, e in enumerate(encode_examples(eval_examples, encoder))]

    # 3. Train: the heads may learn faster than the pretrained backbone.
    plan = BatchPlan(n, t.batch_size, t.seed, lengths=[len(e.input_ids) for e in train_encoded],
                     buckets=t.length_buckets)
    pair_plan = BatchPlan(len(pair_encoded), t.pair_batch_size, t.seed + 1) if pair_encoded else None
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=rows, eval_dataset=eval_rows if args.eval_strategy != "no" else None,
        data_collator=functools.partial(collate_rows, pad_id=pad_id, question_end=model.needs_question_end),
        processing_class=tokenizer, compute_metrics=eval_metrics(objectives),
        callbacks=[Clock(), Progress(t.progress), *_tensorboard(t.report_to, out, args.process_index == 0),
                   *callbacks],
        batches=TrainBatches(plan, pair_plan), heads=heads, loss_options=options, pair_weight=t.pair_weight,
        head_learning_rate=t.head_learning_rate, frozen_layers=config.model.freeze_layers if states else 0)
    trainer.remove_callback(PrinterCallback)  # Progress logs the lines
    checkpoint = {"auto": last_complete_checkpoint(out), "never": None}.get(t.resume, Path(t.resume))
    log.info("training %s on %d examples and %d pairs (%d eval), %d x %d per step and process, device %s%s",
             config.model.backbone, n, len(pair_encoded), len(eval_examples), t.batch_size, t.grad_accum,
             args.device, f", resuming from {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    # 4. Save, evaluate, and mark the stage done.
    if config.model.lora.enabled:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.backbone = unwrapped.backbone.merge_and_unload()
    trainer.save_model(str(out))  # gathers ZeRO-3 / FSDP shards; the main process writes
    replicas = _replica_hashes(trainer)
    if trainer.is_world_process_zero():
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle: the config is in moslim_run.json
        results = _evaluate(config, out, eval_examples, objectives, args.device)
        for folder in out.glob("checkpoint-*"):
            shutil.rmtree(folder)
        _write_summary(out / RUN_FILE, config, trainer, results, {
            "train_examples": n, "train_pairs": len(pair_encoded), "replica_sha256": replicas,
            "cache_seconds": round(cache_seconds, 1) if cache_seconds is not None else None,
            "resumed_from": str(checkpoint) if checkpoint else None})
    trainer.accelerator.wait_for_everyone()
    return out


def _write_summary(path: Path, config: RewardTrainConfig, trainer, results: dict[str, Any],
                   facts: dict[str, Any]) -> None:
    """``moslim_run.json``, atomically: what trained, how long, the log history, the metrics and the config."""
    t = config.train
    seconds, cpu_seconds = next(c for c in trainer.callback_handler.callbacks if isinstance(c, Clock)).totals()
    steps, world = trainer.state.global_step, trainer.args.world_size
    summary = {"stage": "rm", "output_dir": str(path.parent), "backbone": config.model.backbone, "steps": steps,
               **facts, "epochs": round(steps * t.grad_accum * t.batch_size * world / facts["train_examples"], 2),
               "train_seconds": round(seconds, 3),
               # CPU seconds of this process (all threads): on a shared machine, wall time says little
               "train_cpu_seconds": round(cpu_seconds, 1), "threads": torch.get_num_threads(), "world_size": world,
               "history": _history(trainer.state.log_history), "metrics": _summary_metrics(results),
               "config": to_dict(config)}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    log.info("reward model saved to %s (%.1f s of training)", path.parent, seconds)


def _balanced_heads(names: list[str] | None, heads: list[str]) -> list[bool] | None:
    """train.balanced_heads as one flag per head (None: every head balanced)."""
    if names is None:
        return None
    unknown = [name for name in names if name not in heads]
    if unknown:
        raise ValueError(f"train.balanced_heads names {unknown}, which this model does not train; its heads: {heads}")
    return [name in names for name in heads]


def _cache_frozen(config: RewardTrainConfig, model, pad_id: int, device, sequences: list, bf16: bool
                  ) -> tuple[list[torch.Tensor] | None, float | None]:
    """The frozen layers' output for each sequence (model.freeze_layers + train.cache_frozen), and the seconds
    it took; (None, None) without a cache. ``bf16``: under bf16 autocast (the training's resolved setting).

    Checked against a plain forward on a few rows first; a backbone the cache cannot stand in for trains
    the plain way, with a warning.
    """
    t, n = config.train, config.model.freeze_layers
    if not n or not t.cache_frozen:
        return None, None
    start = time.perf_counter()
    prefix = FrozenPrefix(model, n, pad_id, device, batch_size=max(16, t.batch_size * 2), autocast=bf16)
    try:
        sample = sequences[:4]
        prefix.check(sample, prefix.encode(sample), atol=5e-2 if bf16 else 1e-3)
    except ValueError as err:
        log.warning("train.cache_frozen: %s; training without the cache", err)
        return None, None
    progress = _progress(t.progress, len(sequences), 0, desc="rm cache", unit="seq")
    states = prefix.encode(sequences, progress.update if progress is not None else None)
    if progress is not None:
        progress.close()
    seconds = time.perf_counter() - start
    log.info("cached the first %d layers' output for %d sequences in %.0f s", n, len(sequences), seconds)
    return states, seconds


def _evaluate(config: RewardTrainConfig, out: Path, eval_examples: list, objectives, device) -> dict[str, Any]:
    """The saved model (what users load) on the held-out examples and pairs; writes ``out/eval``."""
    from moslim.reward.scorer import RewardScorer

    cfg = config.data
    if not eval_examples and not cfg.pairs:
        return {"heads": {}, "pairs": {}}
    scorer = RewardScorer.from_pretrained(out, device=device, batch_size=config.train.batch_size * 2,
                                          max_length=cfg.max_length)
    pairs = load_pairs(cfg.pairs, objectives, cfg.max_pairs, config.train.seed) if cfg.pairs else None
    return evaluate_reward_model(scorer, eval_examples or None, pairs, out / "eval")


def _replica_hashes(trainer) -> list[str] | None:
    """Under data parallel (DDP), each process's sha256 of its parameters: equal when the replicas agree.
    None in one process, or when the parameters are sharded (FSDP, DeepSpeed)."""
    from accelerate.utils import DistributedType, gather_object

    accelerator = trainer.accelerator
    if accelerator.num_processes == 1 or accelerator.distributed_type not in (DistributedType.MULTI_CPU,
                                                                                DistributedType.MULTI_GPU):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(accelerator.unwrap_model(trainer.model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    hashes = gather_object([digest.hexdigest()])
    if len(set(hashes)) > 1:
        log.warning("the %d processes ended with different parameters: %s", len(hashes), hashes)
    return hashes


def _history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainer's log lines: training (loss, grad_norm, learning_rate, acc_<head>, pair_*) and evaluation."""
    return [entry for entry in log_history if "loss" in entry or "eval_runtime" in entry]


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
