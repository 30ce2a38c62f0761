"""Source adapters: public datasets into moslim records.

Each adapter takes a hub id (read through ``datasets.load_dataset``) or a local file / folder in
the same format, and goes through the same row validation as :mod:`moslim.data.readers` (pass
``on_error="skip"`` and ``rejects_path`` to keep going past bad rows).

- Already-levelled sources give :class:`Example` directly: HelpSteer2 (0-4 per attribute),
  UltraFeedback fine-grained ratings (1-5, stored as levels 0-4), PKU-SafeRLHF (safe / unsafe).
- Pairwise sources give :class:`PreferencePair`: HH-RLHF, PKU-SafeRLHF (safer / better response).
- Sources whose signal still needs binning give :class:`Scored` records (a response and its raw
  signals), which a :class:`~moslim.data.labelling.LabellingSpec` turns into levels: AlpacaEval
  (judge preference, word count) and XSTest (human verdict x prompt safety).
- Prompt sets give :class:`PromptRecord`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moslim.data.readers import RowError, check_prompt, check_text, load_records
from moslim.data.schema import Example, PreferencePair, PromptRecord

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
XSTEST_VERDICTS = {"1_full_compliance": "full_compliance", "2_full_refusal": "full_refusal",
                   "3_partial_refusal": "partial_refusal"}


@dataclass
class Scored:
    """A response with raw signals (not yet levels); ``group`` is the prompt key splits go by."""

    id: str
    group: str
    prompt: str | list[dict[str, str]]
    response: str
    source: str
    signals: dict[str, Any] = field(default_factory=dict)


def _read(source: str | Path, parse, on_error: str, rejects_path, split: str, **load_options) -> list:
    return load_records(source, parse, on_error, rejects_path, split, **load_options).items


def _int_in(value: Any, low: int, high: int, name: str, where: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"{where}: field {name!r} must be a number {low}-{high}, got {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise RowError(f"{where}: field {name!r} must be an integer {low}-{high}, got {value!r}")
    return int(number)


# -- already levelled ---------------------------------------------------------------------------
def helpsteer2(source: str | Path = "nvidia/HelpSteer2", split: str = "train",
               attributes: Mapping[str, str] | None = None, on_error: str = "raise",
               rejects_path: str | Path | None = None) -> list[Example]:
    """HelpSteer2 rows ``{prompt, response, helpfulness, ..., verbosity}`` (each 0-4) as Examples.

    ``attributes`` maps a HelpSteer2 attribute to the objective it labels (default: same names, all five).
    """
    attributes = dict(attributes or {a: a for a in HELPSTEER2_ATTRIBUTES})

    def parse(row: Mapping[str, Any], where: str) -> Example:
        labels = {objective: _int_in(row.get(attr), 0, 4, attr, where)
                  for attr, objective in attributes.items()}
        return Example(id=where, prompt=check_prompt(row.get("prompt"), where),
                       response=check_text(row.get("response"), "response", where),
                       labels=labels, source="helpsteer2")

    return _read(source, parse, on_error, rejects_path, split)


def ultrafeedback(source: str | Path = "openbmb/UltraFeedback", split: str = "train",
                  aspects: Mapping[str, str] | None = None, on_error: str = "raise",
                  rejects_path: str | Path | None = None) -> list[Example]:
    """UltraFeedback fine-grained ratings: each completion's aspect ``Rating`` 1-5 becomes level 0-4.

    A rating of ``"N/A"`` leaves that label missing. ``aspects`` maps aspect -> objective.
    """
    aspects = dict(aspects or {a: a for a in ULTRAFEEDBACK_ASPECTS})

    def parse(row: Mapping[str, Any], where: str) -> list[Example]:
        prompt = check_text(row.get("instruction"), "instruction", where)
        completions = row.get("completions")
        if not isinstance(completions, list):
            raise RowError(f"{where}: field 'completions' must be a list, got {completions!r:.60}")
        out = []
        for i, comp in enumerate(completions):
            cwhere = f"{where} completion {i}"
            if not isinstance(comp, Mapping):
                raise RowError(f"{cwhere}: expected an object with 'response' and 'annotations'")
            notes = comp.get("annotations") or {}
            labels = {}
            for aspect, objective in aspects.items():
                rating = (notes.get(aspect) or {}).get("Rating")
                if rating not in (None, "N/A"):
                    labels[objective] = _int_in(rating, 1, 5, f"{aspect}.Rating", cwhere) - 1
            out.append(Example(id=f"{where}/{comp.get('model', i)}", prompt=prompt,
                               response=check_text(comp.get("response"), "response", cwhere),
                               labels=labels, source="ultrafeedback"))
        return out

    return _read(source, parse, on_error, rejects_path, split)


def pku_saferlhf(source: str | Path = "PKU-Alignment/PKU-SafeRLHF", split: str = "train",
                 harmless_objective: str = "harmlessness", helpful_objective: str | None = "helpfulness",
                 on_error: str = "raise", rejects_path: str | Path | None = None,
                 ) -> tuple[list[Example], list[PreferencePair]]:
    """PKU-SafeRLHF: each response as an Example (safe -> level 1, unsafe -> 0) and its pairs.

    Pairs: ``safer_response_id`` gives a pair for ``harmless_objective``; ``better_response_id`` one
    for ``helpful_objective`` (None skips it).
    """
    def parse(row: Mapping[str, Any], where: str) -> list:
        prompt = check_text(row.get("prompt"), "prompt", where)
        responses = [check_text(row.get(f"response_{i}"), f"response_{i}", where) for i in (0, 1)]
        out: list = []
        for i, response in enumerate(responses):
            safe = row.get(f"is_response_{i}_safe")
            if not isinstance(safe, bool):
                raise RowError(f"{where}: field 'is_response_{i}_safe' must be true/false, got {safe!r}")
            out.append(Example(id=f"{where}/{i}", prompt=prompt, response=response,
                               labels={harmless_objective: int(safe)}, source="pku_saferlhf"))
        for key, objective in (("safer_response_id", harmless_objective),
                               ("better_response_id", helpful_objective)):
            if objective is None:
                continue
            best = _int_in(row.get(key), 0, 1, key, where)
            out.append(PreferencePair(id=f"{where}/{objective}", prompt=prompt, chosen=responses[best],
                                      rejected=responses[1 - best], objective=objective,
                                      source="pku_saferlhf"))
        return out

    items = _read(source, parse, on_error, rejects_path, split)
    return ([x for x in items if isinstance(x, Example)], [x for x in items if isinstance(x, PreferencePair)])


# -- pairwise --------------------------------------------------------------------------------------
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str, where: str = "") -> list[dict[str, str]]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: hello"`` -> chat messages (user / assistant turns)."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise RowError(f"{where}: dialogue must start with '\\n\\nHuman: ', got {text[:40]!r}")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()} for who, said in zip(parts[1::2], parts[2::2])]


def hh_rlhf(source: str | Path = "Anthropic/hh-rlhf", split: str = "test", data_dir: str | None = "harmless-base",
            objective: str = "harmlessness", on_error: str = "raise",
            rejects_path: str | Path | None = None) -> list[PreferencePair]:
    """HH-RLHF ``{chosen, rejected}`` dialogues as pairs over their final assistant reply.

    A pair whose dialogues differ before the final reply (5 of 2,312 in harmless-base test) is a bad row.
    """
    options = {"data_dir": data_dir} if data_dir and not Path(source).exists() else {}
    return _read(source, hh_rlhf_parser(objective), on_error, rejects_path, split, **options)


def hh_rlhf_parser(objective: str = "harmlessness"):
    def parse(row: Mapping[str, Any], where: str) -> PreferencePair:
        chosen = parse_hh_dialogue(check_text(row.get("chosen"), "chosen", where), where)
        rejected = parse_hh_dialogue(check_text(row.get("rejected"), "rejected", where), where)
        if chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
            raise RowError(f"{where}: chosen and rejected dialogues differ before the final assistant reply")
        return PreferencePair(id=where, prompt=chosen[:-1],
                              chosen=check_text(chosen[-1]["content"], "chosen", where),
                              rejected=check_text(rejected[-1]["content"], "rejected", where),
                              objective=objective, source="hh_rlhf")

    return parse


# -- raw signals (the shared data folder) -----------------------------------------------------------
def alpaca_eval_responses(path: str | Path, on_error: str = "raise",
                          rejects_path: str | Path | None = None) -> list[Scored]:
    """AlpacaEval answers with signal ``alpaca_eval_preference`` (1-2; ``words`` comes from the text)."""
    return _read(path, alpaca_eval_parser(), on_error, rejects_path, "train")


def alpaca_eval_parser():
    def parse(row: Mapping[str, Any], where: str) -> Scored:
        preference = row.get("preference")
        if isinstance(preference, bool) or not isinstance(preference, int | float) or not 1 <= preference <= 2:
            raise RowError(f"{where}: field 'preference' must be a number in [1, 2], got {preference!r}")
        return Scored(id=f"alpaca_eval/{row.get('id')}", group=f"alpaca_eval/{row.get('instruction_idx')}",
                      prompt=check_text(row.get("instruction"), "instruction", where),
                      response=check_text(row.get("output"), "output", where),
                      source=f"alpaca_eval/{row.get('generator')}",
                      signals={"alpaca_eval_preference": float(preference)})

    return parse


def add_prompt_ranks(rows: list[Scored], signal: str, into: str) -> list[Scored]:
    """Add ``into``: each row's percentile rank of ``signal`` among the rows of its prompt (``group``).

    0 = lowest on that prompt, 1 = highest; ties share their average rank; a prompt with one row gets 0.5.
    Ranking within a prompt removes how hard the prompt is from the label, leaving how good the answer is.
    """
    by_group: dict[str, list[Scored]] = {}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    for group in by_group.values():
        ordered = sorted(group, key=lambda r: r.signals[signal])
        start = 0
        while start < len(ordered):
            end = start
            while end + 1 < len(ordered) and ordered[end + 1].signals[signal] == ordered[start].signals[signal]:
                end += 1
            rank = (start + end) / 2 / (len(ordered) - 1) if len(ordered) > 1 else 0.5
            for row in ordered[start:end + 1]:
                row.signals[into] = rank
            start = end + 1
    return rows


def xstest_responses(path: str | Path, prompt_safety: Mapping[str, str], on_error: str = "raise",
                     rejects_path: str | Path | None = None) -> list[Scored]:
    """XSTest's labelled model responses (its files call them completions) with signal ``xstest_verdict`` =
    ``"<safe|unsafe>/<final label>"``.

    ``prompt_safety`` maps the prompt id (``"17"``) to ``"safe"`` / ``"unsafe"`` (from xstest_prompts.csv).
    """
    model = Path(path).name.removeprefix("xstest_v2_completions_").removesuffix("_gpteval.csv")

    def parse(row: Mapping[str, Any], where: str) -> Scored:
        prompt_id = str(row.get("id", "")).removeprefix("v2-")
        if prompt_id not in prompt_safety:
            raise RowError(f"{where}: id {row.get('id')!r} matches no XSTest prompt")
        verdict = XSTEST_VERDICTS.get(row.get("final_label"))
        if verdict is None:
            raise RowError(f"{where}: field 'final_label' must be one of {', '.join(XSTEST_VERDICTS)}, "
                           f"got {row.get('final_label')!r}")
        return Scored(id=f"xstest/{model}/{prompt_id}", group=f"xstest/{prompt_id}",
                      prompt=check_text(row.get("prompt"), "prompt", where),
                      response=check_text(row.get("completion"), "completion", where),
                      source=f"xstest/{model}",
                      signals={"xstest_verdict": f"{prompt_safety[prompt_id]}/{verdict}"})

    return _read(path, parse, on_error, rejects_path, "train")


# -- prompt sets ---------------------------------------------------------------------------------------
def prompt_set(path: str | Path, origin: str, safety: str, id_field: str = "id", prompt_field: str = "prompt",
               tag_fields: tuple[str, ...] = (), on_error: str = "raise",
               rejects_path: str | Path | None = None) -> list[PromptRecord]:
    """A prompt file as PromptRecords tagged ``{"safety": safety, "origin": origin, <tag_fields>}``."""
    def parse(row: Mapping[str, Any], where: str) -> PromptRecord:
        prompt = row.get(prompt_field)
        if isinstance(prompt, list):  # MT-Bench: a list of turns; the first stands alone
            prompt = prompt[0] if prompt else None
        tags = {"safety": safety, "origin": origin}
        tags.update({f: row[f] for f in tag_fields if row.get(f) not in (None, "")})
        return PromptRecord(id=f"{origin}/{row.get(id_field, where)}",
                            prompt=check_text(prompt, prompt_field, where), source=origin, tags=tags)

    return _read(path, parse, on_error, rejects_path, "train")
