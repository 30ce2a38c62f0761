"""Sampling completions from a policy with a preference in its prompt, rendered exactly as in training.

A trained policy folder carries ``objectives.yaml`` and ``prompt_template.yaml``; a base model has
neither, so the caller passes the objectives and the default :class:`PromptTemplate` is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from moslim import models
from moslim.objectives import ObjectiveSet
from moslim.policy.data import load_template
from moslim.preferences import Preference, PromptTemplate, build_messages

log = logging.getLogger(__name__)


def load_policy(policy: str | Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer, folder) for a built-in name, a folder (full model or LoRA adapter) or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(models.resolve(policy)) if not (Path(policy) / "adapter_config.json").exists() else Path(policy)
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation continues every row from its last real token
    return model.eval(), tokenizer, path


def policy_setting(folder: Path | None, objectives: ObjectiveSet | None,
                   template: PromptTemplate | None) -> tuple[ObjectiveSet, PromptTemplate]:
    """The objectives and template to render with: the arguments, else those saved with the policy."""
    saved = folder if folder is not None and folder.is_dir() else None
    if objectives is None:
        if saved is None or not (saved / "objectives.yaml").exists():
            raise ValueError(f"policy {folder} has no objectives.yaml (a base model?): pass the objectives")
        objectives = ObjectiveSet.from_yaml(saved / "objectives.yaml")
    if template is None:
        file = saved / "prompt_template.yaml" if saved is not None else None
        template = load_template(file if file is not None and file.exists() else None)
    return objectives, template


def _as_preferences(preferences, n: int, objectives: ObjectiveSet) -> list[Preference]:
    if preferences is None or isinstance(preferences, Preference | str):
        preferences = [preferences] * n
    if len(preferences) != n:
        raise ValueError(f"got {n} questions but {len(preferences)} preferences; pass one, or one per question")
    out = []
    for i, pref in enumerate(preferences):
        if pref is None or isinstance(pref, str):
            pref = Preference.parse(pref or "", objectives)
        elif isinstance(pref, dict):
            pref = Preference.of(pref)
        out.append(pref.validate(objectives, f"preference #{i}"))
    return out


def render_prompts(tokenizer, questions: Sequence, preferences: Sequence[Preference], objectives: ObjectiveSet,
                   template: PromptTemplate) -> list[str]:
    """The policy's input text: the chat template over (rendered system message, question), as TRL renders it."""
    return [tokenizer.apply_chat_template(build_messages(q, p, objectives, template), tokenize=False,
                                          add_generation_prompt=True) for q, p in zip(questions, preferences)]


def generate_completions(policy_path_or_model, questions: Sequence, preferences=None,
                         objectives: ObjectiveSet | None = None, template: PromptTemplate | None = None,
                         max_new_tokens: int = 128, temperature: float = 0.7, top_p: float = 0.95,
                         num_samples: int = 1, seed: int = 0, batch_size: int = 8,
                         tokenizer=None, progress: bool = True, engine: str = "auto",
                         answer_prefix: str | Sequence[str] = "") -> list[list[str]]:
    """``num_samples`` completions per question: list (questions) of list (samples) of str.

    ``policy_path_or_model`` is a folder / built-in name, or a loaded model (pass its ``tokenizer``).
    ``preferences``: one for all questions or one per question (Preference, "a=1,b=2", dict or None).
    ``temperature`` 0 decodes greedily. The same seed gives the same completions (per engine).
    ``engine``: "fast" (``moslim.policy.fast.generate_batch``), "stock" (``model.generate``) or "auto"
    (fast on CPU, stock elsewhere): the values of RL's ``train.rollout``.
    ``answer_prefix`` (one, or one per question) opens the assistant's turn: the model continues it, and each
    completion returned starts with it (a prefilled answer, e.g. the opening of a refusal).
    """
    from moslim.policy import fast

    fast.check_setting(engine, "engine")
    if isinstance(policy_path_or_model, str | Path):
        model, tokenizer, folder = load_policy(policy_path_or_model)
    else:
        if tokenizer is None:
            raise ValueError("pass the tokenizer along with a loaded model")
        model = policy_path_or_model
        folder = Path(getattr(model.config, "_name_or_path", "") or ".")
        tokenizer.padding_side = "left"
    objectives, template = policy_setting(folder, objectives, template)
    prefs = _as_preferences(preferences, len(questions), objectives)
    prefixes = [answer_prefix] * len(questions) if isinstance(answer_prefix, str) else list(answer_prefix)
    if len(prefixes) != len(questions):
        raise ValueError(f"got {len(questions)} questions but {len(prefixes)} answer prefixes; pass one, or one "
                         f"per question")
    prompts = [p + pre for p, pre in zip(render_prompts(tokenizer, questions, prefs, objectives, template),
                                         prefixes)]
    if engine == "fast" or (engine == "auto" and fast.use_fast_path("auto", model.device)):
        raw = _generate_fast(model, tokenizer, prompts, max_new_tokens, temperature, top_p, num_samples, seed,
                             batch_size, progress)
    else:
        raw = _generate_stock(model, tokenizer, prompts, max_new_tokens, temperature, top_p, num_samples, seed,
                              batch_size, progress)
    return [[(pre + t).strip() for t in samples] for pre, samples in zip(prefixes, raw)]


def _generate_stock(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                    num_samples: int, seed: int, batch_size: int, progress: bool) -> list[list[str]]:
    """``model.generate`` over batches of prompts: the decoded new text of each sample, unstripped."""
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
        {"do_sample": False}
    torch.manual_seed(seed)
    completions: list[list[str]] = []
    bar = tqdm(total=len(prompts), desc="generating", unit="prompt", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, num_return_sequences=num_samples,
                                 pad_token_id=tokenizer.pad_token_id, **sampling)  # (rows * samples, t)
        texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        completions += [texts[i:i + num_samples] for i in range(0, len(texts), num_samples)]
        bar.update(batch["input_ids"].shape[0])
    bar.close()
    return completions


def _generate_fast(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                   num_samples: int, seed: int, batch_size: int, progress: bool) -> list[list[str]]:
    """The same completions' distribution through ``fast.generate_stream``: up to ``batch_size`` prompts' rows decode at
    once, the next prompts joining as rows end (each prompt's samples prefilled once), unstripped."""
    from moslim.policy.fast import generate_stream

    generator = torch.Generator().manual_seed(seed)
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    rows = [ids for ids in prompt_ids for _ in range(num_samples)]
    bar = tqdm(total=len(rows), desc="generating", unit="completion", disable=not progress)
    completion_ids, _ = generate_stream(model, tokenizer, rows, width=batch_size * num_samples,
                                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                        generator=generator, on_done=lambda n: bar.update(n - bar.n))
    bar.close()
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return [texts[i:i + num_samples] for i in range(0, len(texts), num_samples)]
