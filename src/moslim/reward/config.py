"""The reward-model training config: one dataclass per YAML section (``model``, ``data``, ``train``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from moslim.config import LoraSection, bounded


@dataclass
class ModelSection:
    backbone: str = "smollm2-135m-instruct"  # built-in name (`moslim models list`), local folder or hub id
    pooling: Literal["last", "mean", "cls"] | None = None  # None: "last" for decoders, "mean" for encoders
    input_format: Literal["chat", "plain", "pair"] | None = None  # None: chat/plain for decoders, pair for encoders
    head_dropout: float = bounded(0.0, high=1)  # dropout on the pooled vector before the heads
    max_layers: int | None = bounded(None, low=1)  # keep the backbone's first N layers (compute scales with N)
    freeze_backbone: bool = False  # train the heads only (a linear probe)
    # Freeze the embeddings and the first N layers (0: none). With train.cache_frozen their output is
    # computed once per example, so the top layers and heads train for many epochs at a fraction of the cost.
    freeze_layers: int = 0
    # A two-level objective computed as XSTest's rule from two factor heads: harmful (level 0) =
    # P(request unsafe) x P(answer complies). The objectives file's `factors` section names the two factors
    # (request first, answer second); data rows may label them. None: every objective has a plain head.
    factored: str | None = None
    # The request factor reads the hidden state at the question's last token, where a causal backbone has not
    # seen the answer yet, instead of the pooled one: a prompt classifier the answer cannot sway.
    request_at_question_end: bool = False
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class DataSection:
    objectives: str = "moslim:assets/demo/objectives.yaml"  # objective set + labelling spec
    train: str = "moslim:assets/demo/rm_train.jsonl.gz"  # labelled examples (JSONL, .gz allowed)
    eval: str | None = "moslim:assets/demo/rm_eval.jsonl.gz"  # held-out examples: eval during/after training
    pairs: str | None = "moslim:assets/demo/pairs_eval.jsonl.gz"  # held-out preference pairs: pairwise accuracy
    max_length: int = bounded(256, low=2)  # tokens per (question, answer); the answer keeps its end when truncated
    max_train_examples: int | None = bounded(None, low=1)  # cap for quick runs: a seeded random subset
    max_eval_examples: int | None = bounded(None, low=1)  # a seeded random subset (files are grouped by source)
    max_pairs: int | None = bounded(None, low=1)  # cap on the preference pairs scored at the end (seeded random subset)
    train_pairs: str | None = None  # preference pairs for the pairwise loss (train.pair_weight > 0)
    max_train_pairs: int | None = bounded(None, low=1)  # a seeded random subset of train_pairs


@dataclass
class TrainSection:
    RENAMED: ClassVar[dict[str, tuple[str, str]]] = {
        "lr": ("learning_rate", "the same name RL's config uses"),
        "head_lr": ("head_learning_rate", "the same name RL's config uses")}

    seed: int = 0  # heads' init, data order and dropout
    epochs: float = 1.0  # passes over the training set (ignored when max_steps is set)
    max_steps: int | None = bounded(None, low=1)  # optimizer steps; caps the run's length on slow machines
    batch_size: int = bounded(8, low=1)  # examples per forward pass
    grad_accum: int = bounded(1, low=1)  # forward passes per optimizer step
    learning_rate: float = 3e-5  # the backbone's
    # The freshly initialised heads learn faster; None: the same as learning_rate.
    head_learning_rate: float | None = 1e-3
    weight_decay: float = 0.0
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # after warm-up
    warmup_ratio: float = bounded(0.05, high=1)  # fraction of the steps with a linear warm-up
    max_grad_norm: float = 1.0
    label_smoothing: float = bounded(0.0, high=0.999)  # spread over the head's own levels
    ordinal_weight: float = 0.0  # > 0 adds the squared EMD term: two levels off costs more than one
    class_weights: Literal["none", "balanced"] = "none"  # "balanced": each level weighs the same per head
    # With class_weights: balanced, only these heads are balanced and the others weigh every row 1 (None: all).
    # Balancing a head trains it as if its levels were equally common, which moves its probabilities off the
    # data's own rates: the request factor then calls more safe requests unsafe (docs/study.md).
    balanced_heads: list[str] | None = None
    # Pairwise (Bradley-Terry) term on data.train_pairs: -log sigmoid(s(chosen) - s(rejected)), s = the
    # log-odds of the upper half of the pair's objective's levels (for two levels: logit 1 - logit 0).
    pair_weight: float = 0.0
    pair_batch_size: int = bounded(8, low=1)  # pairs per optimizer step (each pair is two sequences)
    cache_frozen: bool = True  # with model.freeze_layers: run the frozen layers once per example and cache them
    # Batches cut from runs of this many batches sorted by length (less padding); 1: plain random batches.
    # Off by default: when an objective follows length (verbosity), sorted batches each hold one level.
    length_buckets: int = bounded(1, low=1)
    # Autocast to bfloat16. "auto": where the device has native bf16 matmuls (CUDA with bf16, a CPU with
    # AVX512/AMX); on an AVX2-only CPU bf16 is emulated and ~8x slower than float32 (moslim.precision).
    bf16: bool | Literal["auto"] = False
    device: str | None = None  # "cpu", "cuda", or None: cuda when available (one GPU per process), else cpu
    eval_every: int = 0  # optimizer steps between evaluations on data.eval; 0: only at the end
    save_every: int = 50  # steps between checkpoints (a killed run resumes from the last complete one); 0: none
    log_every: int = 10  # optimizer steps between log lines; 0: only the last
    # transformers' integrations (tensorboard, wandb, mlflow, ...); tensorboard writes to output_dir/tensorboard
    report_to: list[str] = field(default_factory=list)
    # "auto": continue from the newest complete output_dir/checkpoint-N (and skip a finished run with the same
    # config); "never": start over; a folder: continue from that checkpoint. The same values as RL's train.resume.
    resume: str = "auto"
    progress: bool = True  # a progress bar with loss and per-head accuracy


@dataclass
class RewardTrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    output_dir: str = "runs/rm"  # the trained model, its evaluation and moslim_run.json land here

    def __post_init__(self):
        if self.train.batch_size < 1 or self.train.grad_accum < 1:
            raise ValueError(f"train.batch_size ({self.train.batch_size}) and train.grad_accum "
                             f"({self.train.grad_accum}) must be at least 1")
        if self.train.max_steps is None and self.train.epochs <= 0:
            raise ValueError(f"train.epochs must be positive when train.max_steps is unset, got {self.train.epochs}")
        if not 0 <= self.train.label_smoothing < 1:
            raise ValueError(f"train.label_smoothing must be in [0, 1), got {self.train.label_smoothing}")
        if self.train.balanced_heads is not None and self.train.class_weights != "balanced":
            raise ValueError(f"train.balanced_heads ({self.train.balanced_heads}) needs train.class_weights: balanced, "
                             f"got {self.train.class_weights!r}")
        if self.model.freeze_layers < 0:
            raise ValueError(f"model.freeze_layers must be >= 0, got {self.model.freeze_layers}")
        if self.model.freeze_layers and (self.model.lora.enabled or self.model.freeze_backbone):
            raise ValueError("model.freeze_layers cannot be combined with model.lora.enabled or "
                             "model.freeze_backbone; pick one way to limit what trains")
        if self.model.max_layers and self.model.freeze_layers > self.model.max_layers:
            raise ValueError(f"model.freeze_layers ({self.model.freeze_layers}) exceeds model.max_layers "
                             f"({self.model.max_layers})")
        if self.train.pair_weight < 0 or (self.train.pair_weight > 0 and not self.data.train_pairs):
            raise ValueError(f"train.pair_weight ({self.train.pair_weight}) must be >= 0, and > 0 needs "
                             f"data.train_pairs (a preference-pair file)")
        if self.train.pair_batch_size < 1 or self.train.length_buckets < 1:
            raise ValueError(f"train.pair_batch_size ({self.train.pair_batch_size}) and train.length_buckets "
                             f"({self.train.length_buckets}) must be at least 1")
        if self.model.lora.save != "merged":
            raise ValueError("model.lora.save: a reward model is saved with its adapters merged; use 'merged'")
        if self.model.lora.enabled and self.model.freeze_backbone:
            raise ValueError("model.lora.enabled and model.freeze_backbone exclude each other: LoRA trains "
                             "adapters on the backbone, freezing trains the heads only")
        resume = self.train.resume
        if resume not in ("auto", "never") and not (Path(resume) / "trainer_state.json").is_file():
            raise ValueError(f"train.resume={resume!r}: expected 'auto', 'never' or a checkpoint folder "
                             f"(one holding trainer_state.json)")
        if self.train.device not in (None, "cpu", "cuda"):
            raise ValueError(f"train.device: expected cpu, cuda or null, got {self.train.device!r}; to pick GPUs, "
                             f"set CUDA_VISIBLE_DEVICES (under accelerate launch each process takes one)")
        if self.train.warmup_ratio >= 1:
            raise ValueError(f"train.warmup_ratio is a fraction of the steps, below 1; got {self.train.warmup_ratio}")

    def check_inputs(self) -> None:
        """The backbone and every data file exist: checked before the output folder is made or anything loads."""
        from moslim import models
        from moslim.paths import resolve_path

        models.check_reference(self.model.backbone, "model.backbone")
        for key in ("objectives", "train", "eval", "pairs", "train_pairs"):
            path = getattr(self.data, key)
            if path is not None and not resolve_path(path).exists():
                raise ValueError(f"data.{key}: file {path} does not exist")
