"""Shorter copies of the reward model's answers, cut at sentence ends and labelled by their word count.

    .venv/bin/python scripts/build_length_rows.py --out runs/data-len/rm_train.jsonl.gz
    nice -n 5 .venv/bin/moslim rm train --config configs/demo/rm.yaml \
        data.train=runs/data-len/rm_train.jsonl.gz output_dir=runs/rm-len

The reward model's verbosity head errs between neighbouring levels on the RL policy's answers, and RL follows
its errors (docs/study.md, "Where the demo recipe loses verbosity"). The word count labels any text exactly, so
the head can be shown many more lengths in the policy's own style without sampling anything: every answer of
the chosen sources (by default SmolLM2's own and its RL policies', the style RL starts from) is cut after each
sentence, and for each verbosity level below the answer's own the longest such prefix in that level is kept --
the prefixes nearest each level's upper bound, where the head errs. A prefix keeps its prompt's known safety
(``unsafe_request``, a property of the request) and gets the exact verbosity level; every other label is left
out, since cutting an answer can change whether it helps or refuses. ``--shortest`` also keeps each level's shortest
prefix, the answer's own level included: rows just above each level's lower bound, and level-3 rows of 71-100
words from SmolLM2's long answers, where the head calls the RL policy's long answers level 2.

Writes the input's rows unchanged, then the new ones (id ``<row id>/cut<words>``, source ``<source>+cut``), to
``--out``; a study's own copy of the data, not shipped.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from moslim.data.demo import DEMO_DIR
from moslim.data.labelling import LabellingSpec, verbosity_level

# Where a sentence may end: after . ! ? (or a closing quote or bracket after them) before white space, or at a
# line break.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*(?=\s)|(?=\n)")
DEFAULT_SOURCES = ("smollm2-135m-instruct", "smollm2-135m-instruct-prefilled-refusal",
                   "grpo-harmlessness-study-policy")


def sentence_prefixes(text: str) -> list[str]:
    """Every prefix of ``text`` that ends at a sentence end, shortest first, stripped, the whole text left out."""
    out = []
    for match in SENTENCE_END.finditer(text):
        prefix = text[: match.end()].rstrip()
        if prefix and prefix != text.rstrip() and (not out or prefix != out[-1]):
            out.append(prefix)
    return out


def length_rows(row: dict, spec: LabellingSpec, shortest: bool = False) -> list[dict]:
    """For each verbosity level below the row's own, its longest sentence prefix in that level (see above); with
    ``shortest``, also the shortest prefix in each level, the row's own level included (each level's lower bound)."""
    level = verbosity_level(row["response"], spec)
    by_level: dict[int, list[str]] = {}
    for prefix in sentence_prefixes(row["response"]):  # shortest first
        by_level.setdefault(verbosity_level(prefix, spec), []).append(prefix)
    kept = {cut: ([p[0], p[-1]] if shortest and len(p) > 1 else [p[-1]]) for cut, p in by_level.items() if cut < level}
    if shortest and level in by_level:
        kept[level] = by_level[level][:1]  # the row's own level: its shortest prefix only, the row is its longest
    labels = {k: v for k, v in row.get("labels", {}).items() if k == "unsafe_request"}
    return [{"id": f"{row['id']}/cut{len(prefix.split())}", "prompt": row["prompt"], "response": prefix,
             "labels": {**labels, "verbosity": cut}, "source": f"{row.get('source', '')}+cut"}
            for cut in sorted(kept) for prefix in kept[cut]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DEMO_DIR / "rm_train.jsonl.gz"),
                        help="the reward model's training rows (default: the shipped demo's)")
    parser.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES),
                        help="the rows' `source` values to cut (default: SmolLM2's own answers and its policies')")
    parser.add_argument("--shortest", action="store_true",
                        help="also keep each level's shortest prefix, the answer's own level included: rows just "
                             "above each level's lower bound (a long answer then gives level-3 rows of 71+ words)")
    parser.add_argument("--out", type=Path, required=True, help="the training rows with the new ones appended")
    args = parser.parse_args()

    from moslim.data.labelling import load_labelling
    from moslim.data.readers import iter_rows, write_jsonl
    from moslim.reward.data import read_objectives

    objectives, _ = read_objectives("moslim:assets/demo/objectives.yaml")
    spec = load_labelling(DEMO_DIR / "objectives.yaml", objectives)
    rows = [row for _, row in iter_rows(args.train)]
    sources = set(args.sources)
    unknown = sources - {row.get("source") for row in rows}
    if unknown:
        parser.error(f"no rows of source {', '.join(sorted(unknown))} in {args.train}")
    new = [cut for row in rows if row.get("source") in sources for cut in length_rows(row, spec, args.shortest)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out, rows + new)
    by_level = [sum(r["labels"]["verbosity"] == lv for r in new) for lv in range(objectives["verbosity"].num_levels)]
    print(f"{len(rows)} rows + {len(new)} cut ones (verbosity levels {' / '.join(map(str, by_level))}) -> {args.out}")


if __name__ == "__main__":
    main()
