"""Build the shipped demo dataset from the public data folder (``../shared/data``).

Reads the public sources, fits the helpfulness bins on the training split, labels every response,
samples balanced training / judge / evaluation sets split by prompt, and writes the files listed in
:data:`FILES`. Everything is seeded and written byte-stably, so a rebuild gives identical files.

Splits by prompt: AlpacaEval instructions and XSTest prompts each go to one of ``train`` (60%: the
reward model's data and the RL prompts), ``judge`` (20%: the independent judge's data) and ``eval``
(20%: held-out examples and evaluation prompts). Prompt-only sets (IFEval, Do-Not-Answer,
HarmBench) are split 80 / 20 between RL training and evaluation prompts.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import math
import random
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from moslim.data import adapters
from moslim.data.adapters import Scored
from moslim.data.labelling import LabellingSpec, Rule, fit_quantile_edges, word_count
from moslim.data.readers import iter_rows, load_records, write_jsonl
from moslim.data.refusal import is_refusal
from moslim.data.schema import Example, PreferencePair, PromptRecord, prompt_text
from moslim.data.stats import coverage, level_counts, source_counts
from moslim.objectives import Objective, ObjectiveSet

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"
# Not rebuilt from the public data: the policy's own answers to RL training prompts, sampled once by
# scripts/build_policy_answers.py into the output folder (the base policy's answers; refusals it continued from
# a prefilled opening; an RL policy's answers); build-demo folds each file that is there into rm_train with the
# labels that need no model.
POLICY_ANSWERS = "policy_answers.jsonl.gz"
# The fourth, the answers of policies RL trained on the full MOSLIM reward (scripts/build_policy_answers.py --kind
# moslim), is not shipped: a study builds it into its own copy of the data (docs/study.md).
POLICY_ANSWER_FILES = (POLICY_ANSWERS, "policy_refusals.jsonl.gz", "policy_rl_answers.jsonl.gz",
                       "policy_moslim_answers.jsonl.gz")
FILES = ("objectives.yaml", "judge_objectives.yaml", "rm_train.jsonl.gz", "judge_train.jsonl.gz",
         "rm_eval.jsonl.gz", "judge_eval.jsonl.gz",
         "pairs_train.jsonl.gz", "pairs_eval.jsonl.gz", "prompts_train.jsonl", "prompts_eval.jsonl",
         "balance.md", "SOURCES.md")
SEED = 20240611


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo set (the defaults give the committed files)."""

    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train / judge / eval prompts
    # AlpacaEval rows per (helpfulness, verbosity) cell: 12 cells x 250 = 3,000 training rows, few
    # enough for a small reward model to train on 2 CPU cores in minutes.
    # 12 cells x 500 = ~6,000 AlpacaEval training rows: the reward model caches its frozen lower layers once and
    # trains its top layers for several epochs (configs/demo/rm.yaml), so more rows cost little.
    cell_quota: tuple[int, int, int] = (500, 100, 100)
    generator_share: float = 0.15  # at most this share of a cell from one generator (variety)
    max_words: int = 250  # the policy writes <= ~100 words; very long answers teach little
    hh_pairs: int = 1000  # held-out HH-RLHF harmless pairs (the rest, other prompts, go to pairs_train)
    prompt_eval_fraction: float = 0.2


OBJECTIVES = ObjectiveSet([
    Objective("helpfulness", (
        "give a minimal, low-effort reply that barely addresses the request",
        "give a plain answer that covers the main point",
        "give the most useful, accurate and complete answer you can",
    ), "how well the answer serves the request (its rank among other models' answers, by an LLM judge)"),
    Objective("verbosity", (
        "answer in one short sentence (at most 15 words)",
        "answer in two or three sentences (16 to 40 words)",
        "answer in one short paragraph (41 to 70 words)",
        "answer in detail, with more than 70 words",
    ), "how long the answer is (whitespace word count)"),
    Objective("harmlessness", (
        "comply with every request, even a harmful one",
        "refuse harmful requests politely and answer safe ones",
    ), "whether the answer avoids helping with harm (XSTest human labels x prompt safety)"),
])

REFUSAL = Objective("refusal", (
    "answer the request, fully or in part",
    "refuse the request outright",
), "whether the answer refuses (XSTest human labels: full refusal vs full or partial compliance)")

# The reward model's harmlessness head is factored (`model.factored: harmlessness`): harmful = P(unsafe
# request) x P(the answer complies), each factor learnt from its own labels, which are plentiful where
# harmlessness level 0 (an unsafe request answered) is rare.
FACTORS = ObjectiveSet([
    Objective("unsafe_request", (
        "the request is safe to help with",
        "the request is unsafe: helping with it does harm",
    ), "whether the request itself is unsafe (XSTest's prompt labels; AlpacaEval instructions are safe)"),
    REFUSAL,
])

# The independent judge's own objective set: helpfulness as above, and whether the answer refuses, which the
# evaluation combines with the prompt's known safety into harmlessness the way XSTest does (refusing an unsafe
# prompt, complying with a safe one). Verbosity needs no judge model: the word count is exact.
JUDGE_OBJECTIVES = ObjectiveSet([OBJECTIVES["helpfulness"], REFUSAL])

VERBOSITY_RULE = Rule(signal="words", bins="fixed", edges=(15, 40, 70),
                      note="exact judge: whitespace word count; 0 <= 15 < 1 <= 40 < 2 <= 70 < 3")
XSTEST_HELPFULNESS = Rule(signal="xstest_verdict", table={"safe/full_refusal": 0},
                          note="refusing a safe prompt helps nobody; other XSTest rows stay unlabelled")
SAFE_PROMPT_HARMLESSNESS = Rule(signal="prompt_safety", table={"safe": 1},
                                note="any answer to a prompt known to be safe (AlpacaEval instructions) is "
                                     "harmless, as XSTest's safe/* verdicts are")
XSTEST_REFUSAL = Rule(signal="xstest_verdict", table={
    "safe/full_compliance": 0, "safe/partial_refusal": 0, "safe/full_refusal": 1,
    "unsafe/full_compliance": 0, "unsafe/partial_refusal": 0, "unsafe/full_refusal": 1,
}, note="human final_label: a full refusal is 1; full compliance and partial refusal (which still helps) are 0")
XSTEST_HARMLESSNESS = Rule(signal="xstest_verdict", table={
    "unsafe/full_compliance": 0, "unsafe/partial_refusal": 0, "unsafe/full_refusal": 1,
    "safe/full_compliance": 1, "safe/partial_refusal": 1, "safe/full_refusal": 1,
}, note="human final_label x prompt safety: helping (fully or partly) with an unsafe request is level 0")
XSTEST_UNSAFE_REQUEST = Rule(signal="xstest_verdict", table={
    "safe/full_compliance": 0, "safe/partial_refusal": 0, "safe/full_refusal": 0,
    "unsafe/full_compliance": 1, "unsafe/partial_refusal": 1, "unsafe/full_refusal": 1,
}, note="XSTest's prompt label (safe prompts that look unsafe, and their unsafe contrasts)")
ALPACA_REFUSAL = Rule(signal="answer_origin", table={"alpaca_eval": 0},
                      note="AlpacaEval answers (40 instruction models answering benign requests) comply; the few "
                           "that may refuse are label noise accepted, as without them the refusal factor sees "
                           "compliance only in XSTest's style")
SAFE_PROMPT_REQUEST = Rule(signal="prompt_safety", table={"safe": 0, "unsafe": 1},
                           note="the prompt set's known safety (AlpacaEval instructions are safe)")
# The base policy's own answers (POLICY_ANSWERS): whether each refuses, by the string-match refusal rule
# (moslim.data.refusal), x the prompt's known safety. The signal is "<safety>/<refuses|complies>".
RULE_NOTE = "the base policy's answers to RL training prompts: the refusal rule (moslim.data.refusal) x prompt safety"
RULE_REFUSAL = Rule(signal="rule_verdict", table={
    "safe/refuses": 1, "unsafe/refuses": 1, "safe/complies": 0, "unsafe/complies": 0}, note=RULE_NOTE)
RULE_HARMLESSNESS = Rule(signal="rule_verdict", table={"unsafe/complies": 0, "unsafe/refuses": 1},
                         note=RULE_NOTE + "; answering an unsafe request is level 0")
RULE_HELPFULNESS = Rule(signal="rule_verdict", table={"safe/refuses": 0},
                        note=RULE_NOTE + "; refusing a safe prompt helps nobody")


def bucket(key: str, fractions: Sequence[float], salt: str = "") -> int:
    """A stable split index for ``key`` (sha256, not Python's salted hash)."""
    u = int(hashlib.sha256(f"{SEED}:{salt}:{key}".encode()).hexdigest()[:12], 16) / 16**12
    return next((i for i, edge in enumerate(itertools.accumulate(fractions)) if u < edge), len(fractions) - 1)


def build_spec(train_rows: Sequence[Scored]) -> LabellingSpec:
    """The labelling spec, with helpfulness tertiles fitted on the training split's AlpacaEval rows."""
    edges = fit_quantile_edges([r.signals["alpaca_eval_rank"] for r in train_rows], 3)
    helpfulness = Rule(signal="alpaca_eval_rank", bins="quantile", edges=tuple(round(e, 6) for e in edges),
                       note=f"tertiles of the answer's rank among the AlpacaEval models' answers to the same "
                            f"prompt (0 worst, 1 best) by the GPT-4-turbo judge's preference, fitted on "
                            f"{len(train_rows)} training-split rows of <= 250 words")
    return LabellingSpec({"helpfulness": [helpfulness, XSTEST_HELPFULNESS, RULE_HELPFULNESS],
                          "verbosity": [VERBOSITY_RULE],
                          "harmlessness": [XSTEST_HARMLESSNESS, RULE_HARMLESSNESS, SAFE_PROMPT_HARMLESSNESS],
                          "unsafe_request": [XSTEST_UNSAFE_REQUEST, SAFE_PROMPT_REQUEST],
                          "refusal": [XSTEST_REFUSAL, RULE_REFUSAL, ALPACA_REFUSAL]})


def judge_spec(spec: LabellingSpec) -> LabellingSpec:
    """The judge's labelling: the same helpfulness rules, plus refusal from XSTest's human labels."""
    return LabellingSpec({"helpfulness": spec.rules["helpfulness"], "refusal": [XSTEST_REFUSAL]})


def to_example(row: Scored, spec: LabellingSpec) -> Example:
    return Example(id=row.id, prompt=row.prompt, response=row.response,
                   labels=spec.label(row.signals, response=row.response), source=row.source)


def relabel(example: Example, row: Scored, spec: LabellingSpec) -> Example:
    """The same row labelled by another spec (the judge's)."""
    return Example(id=example.id, prompt=example.prompt, response=example.response,
                   labels=spec.label(row.signals), source=example.source)


def sample_balanced(examples: Sequence[Example], quota: int, generator_share: float,
                    rng: random.Random) -> list[Example]:
    """Up to ``quota`` rows per (helpfulness, verbosity) cell, no generator above its share of a cell."""
    cells: dict[tuple[int, int], list[Example]] = defaultdict(list)
    for ex in examples:
        cells[ex.labels["helpfulness"], ex.labels["verbosity"]].append(ex)
    cap = max(1, math.ceil(quota * generator_share))
    chosen = []
    for cell in sorted(cells):
        rows = cells[cell][:]
        rng.shuffle(rows)
        per_generator: dict[str, int] = defaultdict(int)
        taken = []
        for ex in rows:
            if len(taken) == quota:
                break
            if per_generator[ex.source] < cap:
                per_generator[ex.source] += 1
                taken.append(ex)
        chosen.extend(taken)
    return sorted(chosen, key=lambda ex: ex.id)


# -- pairs --------------------------------------------------------------------------------------
def alpaca_pairs(examples: Sequence[Example], scores: dict[str, float], rng: random.Random,
                 min_gap: float = 0.5) -> list[PreferencePair]:
    """One helpfulness pair per prompt: judge preferences >= ``min_gap`` apart, same verbosity level
    (so length alone cannot tell them apart)."""
    by_prompt: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_prompt[ex.prompt].append(ex)
    pairs = []
    for prompt in sorted(by_prompt):
        rows = sorted(by_prompt[prompt], key=lambda ex: ex.id)
        options = [(a, b) for a, b in itertools.permutations(rows, 2)
                   if scores[a.id] - scores[b.id] >= min_gap and a.labels["verbosity"] == b.labels["verbosity"]]
        if options:
            a, b = rng.choice(options)
            pairs.append(PreferencePair(id=f"{a.id}>{b.id.split('/')[1]}", prompt=prompt, chosen=a.response,
                                        rejected=b.response, objective="helpfulness", source="alpaca_eval"))
    return pairs


def split_hh_pairs(pairs: list[PreferencePair], eval_size: int,
                   rng: random.Random) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """HH pairs split by their opening question (about half each way), ``eval_size`` of the held-out half kept."""
    for pair in pairs:  # ids by line number, not by where the source folder happens to be
        pair.id = f"hh_rlhf/harmless_base_test/{pair.id.rsplit(':', 1)[1]}"
    train, held_out = [], []
    for pair in pairs:
        opening = " ".join(pair.prompt[0]["content"].lower().split())
        (held_out if bucket(opening, (0.5, 0.5), "hh") else train).append(pair)
    held_out = rng.sample(held_out, min(eval_size, len(held_out)))
    return train, sorted(held_out, key=lambda p: int(p.id.rsplit("/", 1)[1]))


def xstest_pairs(rows: Sequence[Scored], rng: random.Random) -> list[PreferencePair]:
    """Per XSTest prompt with both a refusal and a full compliance: unsafe -> harmlessness pair
    (refusal chosen), safe -> helpfulness pair (compliance chosen, over-refusal rejected)."""
    by_group: dict[str, list[Scored]] = defaultdict(list)
    for r in rows:
        by_group[r.group].append(r)
    pairs = []
    for group in sorted(by_group, key=lambda g: int(g.split("/")[1])):
        verdicts = {r.signals["xstest_verdict"]: [] for r in by_group[group]}
        for r in by_group[group]:
            verdicts[r.signals["xstest_verdict"]].append(r)
        for safety, good, bad, objective in (("unsafe", "full_refusal", "full_compliance", "harmlessness"),
                                             ("safe", "full_compliance", "full_refusal", "helpfulness")):
            goods, bads = verdicts.get(f"{safety}/{good}"), verdicts.get(f"{safety}/{bad}")
            if goods and bads:
                a, b = rng.choice(goods), rng.choice(bads)
                pairs.append(PreferencePair(id=f"{a.id}>{b.source.split('/')[1]}", prompt=a.prompt,
                                            chosen=a.response, rejected=b.response, objective=objective,
                                            source="xstest"))
    return pairs


# -- prompts ------------------------------------------------------------------------------------
def split_prompts(records: Iterable[PromptRecord], eval_fraction: float) -> tuple[list, list]:
    """Split by prompt text (duplicates collapse to the first), keyed by a stable hash."""
    train, evaluation, seen = [], [], set()
    for rec in records:
        key = _key(rec)
        if key in seen:
            continue
        seen.add(key)
        (evaluation if bucket(key, (1 - eval_fraction, eval_fraction), "prompts") else train).append(rec)
    return train, evaluation


def build_prompts(source: Path, groups: Callable[[str], int], xstest: list[dict], settings: DemoSettings):
    """RL training and evaluation prompts, each tagged ``{"safety", "origin", ...}``."""
    instructions = adapters.prompt_set(source / "alpaca_eval/instructions.jsonl", "alpaca_eval", "safe",
                                       id_field="instruction_idx", prompt_field="instruction",
                                       tag_fields=("dataset",))
    train = [p for p in instructions if groups(f"alpaca_eval/{p.id.split('/')[1]}") == 0]
    evaluation = [p for p in instructions if groups(f"alpaca_eval/{p.id.split('/')[1]}") == 2]
    for row in xstest:  # the safe half punishes blanket refusal; the unsafe half rewards refusing
        rec = PromptRecord(id=f"xstest/{row['id']}", prompt=row["prompt"], source="xstest",
                           tags={"safety": row["label"], "origin": "xstest", "type": row["type"]})
        side = groups(f"xstest/{row['id']}")
        (train if side == 0 else evaluation if side == 2 else []).append(rec)
    others = [
        adapters.prompt_set(source / "prompts/ifeval_input_data.jsonl", "ifeval", "safe", id_field="key",
                            tag_fields=("instruction_id_list", "kwargs")),
        adapters.prompt_set(source / "prompts/do_not_answer.jsonl", "do_not_answer", "unsafe",
                            tag_fields=("category",)),
        adapters.prompt_set(source / "prompts/harmbench.jsonl", "harmbench", "unsafe"),
    ]
    more_train, more_eval = split_prompts(itertools.chain(*others), settings.prompt_eval_fraction)
    # (self_instruct_user_oriented.jsonl is not added: it is AlpacaEval's `selfinstruct` subset again.)
    eval_only = adapters.prompt_set(source / "prompts/mt_bench_question.jsonl", "mt_bench", "safe",
                                     id_field="question_id", prompt_field="turns", tag_fields=("category",))
    # MT-Bench shares a few questions with AlpacaEval: keep only those no other prompt already has.
    seen = {_key(p) for p in itertools.chain(instructions, train, more_train, evaluation, more_eval)}
    return train + more_train, evaluation + more_eval + [p for p in eval_only if _key(p) not in seen]


def _key(record: PromptRecord | Example) -> str:
    return " ".join(prompt_text(record.prompt).lower().split())


# -- the whole build ------------------------------------------------------------------------------
def build_demo(source: str | Path, out: str | Path = DEMO_DIR, settings: DemoSettings = DemoSettings(),
               progress: Callable[[str], None] = lambda step: None) -> dict[str, Path]:
    """Build every demo file from the public data folder ``source`` into ``out``; return their paths."""
    source, out = Path(source), Path(out)
    if not (source / "alpaca_eval/responses.jsonl.gz").exists():
        raise ValueError(f"{source}: not the public data folder (no alpaca_eval/responses.jsonl.gz)")
    rng = random.Random(SEED)
    # AlpacaEval's `selfinstruct` subset is the self-instruct user-oriented set, which upstream asks
    # not to train on: those prompts go only to the judge and eval sides.
    eval_only = {f"alpaca_eval/{r['instruction_idx']}" for _, r in
                 iter_rows(source / "alpaca_eval/instructions.jsonl") if r["dataset"] == "selfinstruct"}

    def groups(key: str) -> int:
        return bucket(key, (0.0, 0.5, 0.5) if key in eval_only else settings.fractions, "examples")

    progress("reading AlpacaEval")
    alpaca_result = load_records(source / "alpaca_eval/responses.jsonl.gz",
                                 adapters.alpaca_eval_parser(), on_error="skip")
    # Rank among the ~40 answers to the same prompt (all lengths), then drop the long answers.
    adapters.add_prompt_ranks(alpaca_result.items, "alpaca_eval_preference", into="alpaca_eval_rank")
    alpaca = [r for r in alpaca_result.items if word_count(r.response) <= settings.max_words]
    for r in alpaca:
        r.signals["prompt_safety"] = "safe"  # AlpacaEval's instructions are benign requests
        r.signals["answer_origin"] = "alpaca_eval"
    progress("reading XSTest")
    with (source / "xstest/xstest_prompts.csv").open(encoding="utf-8", newline="") as f:
        xstest_prompts = list(csv.DictReader(f))
    safety = {row["id"]: row["label"] for row in xstest_prompts}
    xstest = [r for f in sorted((source / "xstest").glob("xstest_v2_completions_*_gpteval.csv"))
              for r in adapters.xstest_responses(f, safety)]

    progress("fitting bins and labelling")
    spec = build_spec([r for r in alpaca if groups(r.group) == 0])
    jspec = judge_spec(spec)
    splits: dict[str, list[Example]] = {}
    judged: dict[str, list[Example]] = {}
    by_id = {r.id: r for r in itertools.chain(alpaca, xstest)}
    for index, name in enumerate(("rm_train", "judge_train", "rm_eval")):
        pool = [to_example(r, spec) for r in alpaca if groups(r.group) == index]
        chosen = sample_balanced(pool, settings.cell_quota[index], settings.generator_share, rng)
        splits[name] = chosen + [to_example(r, spec) for r in xstest if groups(r.group) == index]
        judged[name] = [e for e in (relabel(e, by_id[e.id], jspec) for e in splits[name]) if e.labels]
    # The judge trains on its own split, with its own objectives; it is scored on the held-out eval split.
    splits["judge_train"] = judged["judge_train"]
    judge_eval = judged["rm_eval"]

    progress("building pairs")
    eval_alpaca = [r for r in alpaca if groups(r.group) == 2]
    hh_result = load_records(source / "hh_rlhf/harmless_base_test.jsonl.gz", adapters.hh_rlhf_parser(),
                             on_error="skip")
    pairs_train, hh_eval = split_hh_pairs(hh_result.items, settings.hh_pairs, rng)
    pairs_eval = (hh_eval + alpaca_pairs([to_example(r, spec) for r in eval_alpaca],
                                         {r.id: r.signals["alpaca_eval_preference"] for r in eval_alpaca}, rng)
                  + xstest_pairs([r for r in xstest if groups(r.group) == 2], rng))

    progress("building prompt sets")
    prompts_train, prompts_eval = build_prompts(source, groups, xstest_prompts, settings)
    for name in POLICY_ANSWER_FILES:
        splits["rm_train"] += policy_answers(out / name, prompts_train, spec)
    check_disjoint(splits, prompts_train, prompts_eval)

    progress("writing files")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"objectives.yaml": write_objectives(out / "objectives.yaml", spec, OBJECTIVES, FACTORS),
             "judge_objectives.yaml": write_objectives(out / "judge_objectives.yaml", jspec, JUDGE_OBJECTIVES)}
    for name, rows in splits.items():
        paths[f"{name}.jsonl.gz"] = write_jsonl(out / f"{name}.jsonl.gz", rows)
    paths["judge_eval.jsonl.gz"] = write_jsonl(out / "judge_eval.jsonl.gz", judge_eval)
    paths["pairs_train.jsonl.gz"] = write_jsonl(out / "pairs_train.jsonl.gz", pairs_train)
    paths["pairs_eval.jsonl.gz"] = write_jsonl(out / "pairs_eval.jsonl.gz", pairs_eval)
    paths["prompts_train.jsonl"] = write_jsonl(out / "prompts_train.jsonl", prompts_train)
    paths["prompts_eval.jsonl"] = write_jsonl(out / "prompts_eval.jsonl", prompts_eval)
    notes = {"AlpacaEval rows rejected (empty output)": len(alpaca_result.rejected),
             f"AlpacaEval rows over {settings.max_words} words (not used)":
                 len(alpaca_result.items) - len(alpaca),
             "HH-RLHF pairs rejected (empty final reply, or dialogues differ before it)": len(hh_result.rejected)}
    pairs = {"pairs_train": pairs_train, "pairs_eval": pairs_eval}
    balance_splits = {**splits, "judge_eval": judge_eval}
    paths["balance.md"] = write_balance(out / "balance.md", balance_splits, pairs, prompts_train, prompts_eval, notes)
    if out.resolve() != DEMO_DIR.resolve():
        paths["SOURCES.md"] = Path(shutil.copyfile(DEMO_DIR / "SOURCES.md", out / "SOURCES.md"))
    else:
        paths["SOURCES.md"] = out / "SOURCES.md"
    return paths


def policy_answers(path: Path, prompts_train: Sequence[PromptRecord], spec: LabellingSpec) -> list[Example]:
    """The base policy's answers to RL training prompts (scripts/build_policy_answers.py), labelled by what
    needs no model: the prompt's known safety (request factor), the refusal rule on the answer (refusal factor;
    with the safety, harmlessness) and the word count (verbosity). None when the file is absent; a row whose
    prompt left the training set is an error."""
    if not path.exists():
        return []
    train_ids = {r.id: r for r in prompts_train}
    examples = []
    for where, row in iter_rows(path):
        prompt_id = row["id"].split("/", 1)[1]
        if prompt_id not in train_ids:
            raise ValueError(f"{where}: prompt {prompt_id!r} is not an RL training prompt any more; rerun "
                             f"scripts/build_policy_answers.py")
        safety = train_ids[prompt_id].tags["safety"]
        verdict = f"{safety}/{'refuses' if is_refusal(row['response']) else 'complies'}"
        signals = {"prompt_safety": safety, "rule_verdict": verdict}
        examples.append(Example(id=row["id"], prompt=row["prompt"], response=row["response"],
                                labels=spec.label(signals, response=row["response"]), source=row["source"]))
    return examples


def check_disjoint(splits: dict[str, list[Example]], prompts_train: list, prompts_eval: list) -> None:
    """Raise if any prompt text sits on two sides (train / judge / eval)."""
    def texts(rows):
        return {_key(r) for r in rows}

    sides = {"train": texts(splits["rm_train"]) | texts(prompts_train), "judge": texts(splits["judge_train"]),
             "eval": texts(splits["rm_eval"]) | texts(prompts_eval)}
    for a, b in itertools.combinations(sides, 2):
        shared = sides[a] & sides[b]
        if shared:
            raise ValueError(f"{len(shared)} prompt(s) on both the {a} and {b} side, e.g. {sorted(shared)[0]!r:.80}")


def write_objectives(path: Path, spec: LabellingSpec, objectives: ObjectiveSet = OBJECTIVES,
                     factors: ObjectiveSet | None = None) -> Path:
    header = ("# The demo's objective set and labelling spec (written by `moslim data build-demo`;\n"
              "# the helpfulness edges are fitted on the training split and reused unchanged everywhere).\n")
    data = {**objectives.to_dict(), **({"factors": factors.to_dict()["objectives"]} if factors else {}),
            "labelling": spec.to_dict()}
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100),
                    encoding="utf-8")
    return path


def write_balance(path: Path, splits: dict[str, list[Example]], pairs: dict[str, list[PreferencePair]],
                  prompts_train: list[PromptRecord], prompts_eval: list[PromptRecord],
                  notes: dict[str, int]) -> Path:
    lines = ["# Demo dataset: class balance", "",
             "Written by `moslim data build-demo`. Rows per objective and level in each split; coverage is the",
             "share of rows carrying that objective's label (the others mask that head).", ""]
    for name, rows in splits.items():
        objectives = JUDGE_OBJECTIVES if name.startswith("judge") else OBJECTIVES.extended(FACTORS)
        counts, cover = level_counts(rows, objectives), coverage(rows, objectives)
        sources = ", ".join(f"{k} {v}" for k, v in sorted(source_counts(rows).items()))
        lines += [f"## {name} ({len(rows)} rows: {sources})", "",
                  "| objective | " + " | ".join(f"level {i}" for i in range(objectives.max_classes))
                  + " | labelled | coverage |", "|---|" + "---:|" * (objectives.max_classes + 2)]
        for obj in objectives:
            cells = [str(c) for c in counts[obj.name]] + ["-"] * (objectives.max_classes - obj.num_levels)
            lines.append(f"| {obj.name} | " + " | ".join(cells)
                         + f" | {sum(counts[obj.name])} | {cover[obj.name]:.0%} |")
        lines.append("")
    for name, records in pairs.items():
        pair_counts = defaultdict(int)
        for p in records:
            pair_counts[p.source, p.objective] += 1
        lines += [f"## {name} ({len(records)} pairs)", "", "| source | objective | pairs |", "|---|---|---:|"]
        lines += [f"| {s} | {o} | {n} |" for (s, o), n in sorted(pair_counts.items())] + [""]
    for name, records in (("prompts_train", prompts_train), ("prompts_eval", prompts_eval)):
        tally = defaultdict(int)
        for r in records:
            tally[r.tags["origin"], r.tags["safety"]] += 1
        lines += [f"## {name} ({len(records)} prompts)", "", "| origin | safety | prompts |", "|---|---|---:|"]
        lines += [f"| {o} | {s} | {n} |" for (o, s), n in sorted(tally.items())] + [""]
    lines += ["## Rows left out while building", ""] + [f"- {k}: {v}" for k, v in notes.items()] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
