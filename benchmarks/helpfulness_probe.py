"""How much helpfulness SmolLM2-135M's layers hold: linear probes at every depth, against the trained head.

    nice .venv/bin/python benchmarks/helpfulness_probe.py [--max-length 128] [--rm runs/demo/rm]
    nice .venv/bin/python benchmarks/helpfulness_probe.py --label band     # the same features, the judge's own bands
    nice .venv/bin/python benchmarks/helpfulness_probe.py --head unsafe_request   # the request factor's labels

The demo's reward model reads helpfulness with 8 of the backbone's 30 layers (6 frozen) and reaches held-out
accuracy ~0.45 (chance 0.33). Is that the depth, the 128-token window, the backbone, or the labels? This script runs
the whole 30-layer backbone once over helpfulness-labelled rows (the RM's input format and truncation,
``--max-length`` tokens), keeps readings of the hidden state after each layer in ``--layers`` (the last token, which
the RM's head reads, the mean over tokens, and the question's last token; saved to ``--features`` and read back on a
rerun over the same rows), and fits a multinomial logistic regression on each (features standardised on the training
rows, classes weighted by inverse frequency; the L2 weight chosen on a fifth of the training rows, never on the
held-out rows, then refitted on all of them). It reports each probe's held-out accuracy, macro-F1 and Spearman (of
the predicted level) on all the held-out helpfulness rows (the RM's own evaluation rows) and on the AlpacaEval rows
alone, beside a probe on the answer's word count alone (the training rows are balanced over helpfulness x verbosity
cells, so length should say little).

The labels: the shipped level is the tertile of an answer's rank among ~40 models' answers to the same request,
ranked by AlpacaEval's judge preference against a reference answer (1 = the reference wins for sure, 2 = the
answer does). With ``--source`` (the public data folder) the script prints how the shipped levels spread over
bands of that preference, and with ``--rm`` a reward model's helpfulness head on the held-out rows split where
the preference is below 1.0005. ``--label band`` probes the preference itself, cut at ``--band-edges``, instead of
the rank tertiles (AlpacaEval rows only).

``--head`` probes another label of the RM's rows the same way (``unsafe_request``: is the request unsafe, the
harmlessness head's request factor; ``refusal``: does the answer refuse), reporting the held-out rows outside
AlpacaEval (XSTest's) beside all of them; a third reading, the question's last token (``qend``), is what a request
classifier that the answer cannot sway reads (the demo RM's ``request_at_question_end``).

A probe is a lower bound on what fine-tuning the same layers can reach, but a close one when the fine-tuned
head (the RM's) scores no better than the probes. Writes ``--out`` (``runs/bench/helpfulness_probe.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from moslim.threads import configure_openmp

configure_openmp()  # the moslim command's OpenMP wait, before torch loads

import torch  # noqa: E402

LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1)
KINDS = ("last", "mean", "qend")  # where a probe reads: the last token, the mean over tokens, the question's end


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, iterations: int = 200) -> torch.Tensor:
    """Multinomial logistic regression on standardised features: (d + 1, c) weights, L-BFGS, L2 on the weights,
    classes weighted by inverse frequency (as the reward model's ``class_weights: balanced``)."""
    w = torch.zeros((x.shape[1] + 1, classes), requires_grad=True)
    weight = len(y) / (classes * torch.bincount(y, minlength=classes).clamp_min(1).float())
    xb = torch.cat([x, torch.ones((x.shape[0], 1))], dim=1)
    opt = torch.optim.LBFGS([w], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, y, weight=weight) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (torch.cat([x, torch.ones((x.shape[0], 1))], dim=1) @ w).argmax(-1)


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, classes: int, seed: int = 0
          ) -> tuple[torch.Tensor, float]:
    """Held-out predictions of the probe whose L2 weight scored best (macro-F1) on a fifth of the training rows."""
    from moslim.reward.evaluate import confusion_matrix, macro_f1

    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
    cut = len(order) // 5
    val, fit = order[:cut], order[cut:]
    a, b = standardise(train_x[fit], train_x[val])
    scores = {l2: macro_f1(confusion_matrix(predict(fit_probe(a, train_y[fit], classes, l2), b), train_y[val], classes))
              for l2 in LAMBDAS}
    best = max(scores, key=scores.get)
    a, b = standardise(train_x, test_x)
    return predict(fit_probe(a, train_y, classes, best), b), best


def metrics(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> dict[str, float]:
    from moslim.reward.evaluate import confusion_matrix, macro_f1, spearman

    rho = spearman(predicted.float(), labels.float())  # nan when the probe predicts one level throughout
    return {"n": len(labels), "accuracy": round(float((predicted == labels).float().mean()), 3),
            "macro_f1": round(macro_f1(confusion_matrix(predicted, labels, classes)), 3),
            "spearman": None if math.isnan(rho) else round(rho, 3)}


@torch.inference_mode()
def features(backbone, encoded: list, pad_id: int, layers: list[int], batch_size: int, progress
             ) -> dict[str, torch.Tensor]:
    """{"last@L" | "mean@L" | "qend@L": (n, d)} for each layer L (0 = embeddings; the last index has the final norm):
    the last token, the mean over tokens, the question's last token."""
    from moslim.reward.encoding import collate

    n, d = len(encoded), backbone.config.hidden_size
    out = {f"{kind}@{layer}": torch.zeros((n, d)) for layer in layers for kind in KINDS}
    order = sorted(range(n), key=lambda i: len(encoded[i].input_ids), reverse=True)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        batch = collate([encoded[i] for i in rows], pad_id)
        hidden = backbone(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        last = batch["attention_mask"].sum(-1) - 1
        qend = torch.tensor([encoded[i].question_end for i in rows])
        every = torch.arange(len(rows))
        for layer in layers:
            h = hidden[layer].float()
            out[f"last@{layer}"][rows] = h[every, last]
            out[f"mean@{layer}"][rows] = (h * mask).sum(1) / mask.sum(1)
            out[f"qend@{layer}"][rows] = h[every, qend]  # before the answer: what a request classifier can read
        progress.update(len(rows))
    return out


def cached_features(args, backbone_name: str, rows: list, tqdm, input_format: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], float | None]:
    """The features of ``rows`` from ``--features`` when it holds exactly these rows and layers, else computed
    (the whole backbone once) and saved there; and the seconds computing took (None when read)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from moslim.models import resolve
    from moslim.reward.encoding import PairEncoder, pad_id_of
    from moslim.reward.train import resolve_input_format

    path = Path(args.features or f"runs/bench/{args.head}_features_{args.max_length}.safetensors")
    ids = json.dumps([e.id for e in rows])
    wanted = {f"{kind}@{layer}" for layer in args.layers for kind in KINDS}
    if path.exists():
        with safe_open(str(path), "pt") as f:
            if f.metadata().get("ids") == ids and wanted <= set(f.keys()):
                print(f"features read from {path}")
                return {name: f.get_tensor(name) for name in sorted(wanted, key=_layer_order)}, None
    model_path = resolve(backbone_name)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    backbone = AutoModel.from_pretrained(model_path, dtype=torch.float32).eval()
    top = backbone.config.num_hidden_layers
    if max(args.layers) > top or min(args.layers) < 0:
        raise SystemExit(f"--layers must lie in 0..{top} (0: the embeddings), got {args.layers}")
    encoder = PairEncoder(tokenizer, resolve_input_format(input_format, model_path, tokenizer), args.max_length)
    encoded = [encoder.encode(e.prompt, e.response) for e in rows]
    start = time.perf_counter()
    with tqdm(total=len(rows), desc=f"{top} layers, {args.max_length} tokens", unit="row") as bar:
        feats = features(backbone, encoded, pad_id_of(tokenizer), args.layers, args.batch_size, bar)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(feats, str(path), metadata={"ids": ids, "max_length": str(args.max_length)})
    return feats, seconds


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _layer_order(name: str) -> tuple[int, str]:
    kind, layer = name.split("@")
    return int(layer), kind


def read_preferences(path: Path) -> dict[str, float]:
    """AlpacaEval's judge preference (1 to 2) per answer id, as the shipped rows name them (``alpaca_eval/...``);
    rows the demo's build skips (a blank answer) are skipped alike."""
    from moslim.data.adapters import alpaca_eval_responses

    return {row.id: row.signals["alpaca_eval_preference"] for row in alpaca_eval_responses(path, on_error="skip")}


BANDS = (1.0005, 1.01, 1.1, 1.5)  # judge preference bands for the label table (1 = the reference wins for sure)


def label_table(rows: list, preference: dict[str, float]) -> dict[str, list[int]]:
    """Shipped helpfulness levels per band of the judge's preference: {band: [rows at level 0, 1, 2]}."""
    edges = (1.0, *BANDS, 2.0)
    table = {f"[{lo:g}, {hi:g})": [0, 0, 0] for lo, hi in zip(edges, edges[1:])}
    for e in rows:
        p = preference[e.id]
        band = int(torch.bucketize(torch.tensor(p), torch.tensor(BANDS), right=True))
        table[list(table)[band]][e.labels["helpfulness"]] += 1
    return table


def rm_by_band(path: str, rows: list, preference: dict[str, float]) -> dict[str, dict[str, float]]:
    """A reward model's helpfulness head on ``rows``, split where the judge's preference is below 1.0005."""
    from moslim.reward.scorer import RewardScorer

    rm = RewardScorer.from_pretrained(path)
    head, classes = rm.objectives.index("helpfulness"), rm.objectives["helpfulness"].num_levels
    probs = rm.score([e.prompt for e in rows], [e.response for e in rows])[:, head, :classes]
    predicted, labels = probs.argmax(-1), torch.tensor([e.labels["helpfulness"] for e in rows])
    low = torch.tensor([preference[e.id] < BANDS[0] for e in rows])
    return {name: metrics(predicted[m], labels[m], classes)
            for name, m in (("all", torch.ones_like(low)), (f"preference < {BANDS[0]}", low),
                            (f"preference >= {BANDS[0]}", ~low))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo/rm.yaml", help="the RM recipe: its data and backbone")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per row (the demo RM's: 128)")
    parser.add_argument("--head", default="helpfulness",
                        help="the labels probed: an objective or factor of the RM's rows (helpfulness, unsafe_request, "
                             "refusal, ...); the band and --rm figures are helpfulness's")
    parser.add_argument("--train-rows", type=int, default=2400, help="labelled training rows probed")
    parser.add_argument("--test-rows", type=int, default=None, help="held-out rows probed (default: all)")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6, 8, 12, 16, 20, 24, 30])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--label", choices=["rank", "band"], default="rank",
                        help="rank: the shipped tertiles of the answer's rank among the prompt's answers; band: the "
                             "judge's preference itself, cut at --band-edges (AlpacaEval rows only)")
    parser.add_argument("--band-edges", type=float, nargs="+", default=[1.01, 1.5],
                        help="preference edges for --label band (1 = the reference wins for sure, 2 = the answer wins)")
    parser.add_argument("--source", default="../shared/data", help="the public data folder (for --label band)")
    parser.add_argument("--rm", default=None,
                        help="a reward model folder: its helpfulness head on the held-out AlpacaEval rows, by band")
    parser.add_argument("--features", default=None,
                        help="safetensors file of the hidden-state features: read when it holds these rows, else "
                             "written (default runs/bench/<head>_features_<max-length>.safetensors)")
    parser.add_argument("--out", default="runs/bench/helpfulness_probe.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    from tqdm import tqdm

    from moslim.config import load_config
    from moslim.reward.config import RewardTrainConfig
    from moslim.reward.data import load_examples, read_factors, read_objectives, subsample

    config = load_config(RewardTrainConfig, args.config)
    objectives, _ = read_objectives(config.data.objectives)
    factors = read_factors(config.data.objectives)  # the demo's rows carry factor labels too
    labelled = objectives.extended(factors) if factors is not None else objectives
    if args.head not in labelled.names:
        raise SystemExit(f"--head {args.head!r}: the rows label {', '.join(labelled.names)}")
    if args.head != "helpfulness" and (args.label == "band" or args.rm):
        raise SystemExit("--label band and --rm read AlpacaEval's judge preference: helpfulness only (--head)")
    classes = labelled[args.head].num_levels
    train = subsample([e for e in load_examples(config.data.train, labelled) if args.head in e.labels],
                      args.train_rows, seed=0)
    test = subsample([e for e in load_examples(config.data.eval, labelled) if args.head in e.labels],
                     args.test_rows, seed=0)
    rows = train + test
    source = Path(args.source) / "alpaca_eval" / "responses.jsonl.gz"
    preference = read_preferences(source) if source.exists() and args.head == "helpfulness" else None
    tables, by_band = {}, None
    if preference is not None:  # what the shipped levels are, in the judge's own terms
        for name, part in (("training", train), ("held out", test)):
            tables[name] = label_table([e for e in part if e.id.startswith("alpaca_eval/")], preference)
            print(f"shipped levels 0/1/2 per judge preference band, {name} AlpacaEval rows: "
                  + "; ".join(f"{band} {'/'.join(map(str, c))}" for band, c in tables[name].items()))
        if args.rm:
            by_band = rm_by_band(args.rm, [e for e in test if e.id.startswith("alpaca_eval/")], preference)
            for name, m in by_band.items():
                print(f"reward model {args.rm}, {name}: n {m['n']} acc {m['accuracy']:.3f} F1 {m['macro_f1']:.3f}")
    feats, seconds = cached_features(args, config.model.backbone, rows, tqdm, config.model.input_format)

    n = len(train)
    alpaca = torch.tensor([e.id.startswith("alpaca_eval/") for e in test])
    if args.label == "rank":
        labels = torch.tensor([e.labels[args.head] for e in rows])
    else:  # the judge's own preference in bands; rows without one (XSTest's) are left out
        if preference is None:
            raise SystemExit(f"--label band needs the judge's preferences: {source} does not exist (--source)")
        keep = torch.tensor([e.id.startswith("alpaca_eval/") for e in rows])
        kept = [e for e, k in zip(rows, keep) if k]
        labels = torch.bucketize(torch.tensor([preference[e.id] for e in kept]),
                                 torch.tensor(args.band_edges), right=True)
        feats = {name: x[keep] for name, x in feats.items()}
        n, rows, alpaca = int(keep[:n].sum()), kept, torch.ones(int(keep[n:].sum()), dtype=torch.bool)
        classes = len(args.band_edges) + 1
    counts = [torch.bincount(part, minlength=classes).tolist() for part in (labels[:n], labels[n:])]
    print(f"labels ({args.label}), training / held out per level: {counts[0]} / {counts[1]}")
    words = torch.tensor([[float(len(e.response.split()))] for e in rows]).log1p()
    results: dict[str, dict] = {}
    subset, subset_name = (alpaca, "AlpacaEval") if args.head == "helpfulness" else (~alpaca, "not AlpacaEval")
    for name, x in [("word count", words), *feats.items()]:
        predicted, l2 = probe(x[:n], labels[:n], x[n:], classes)
        r = {"l2": l2, "all": metrics(predicted, labels[n:], classes), "subset": subset_name,
             subset_name: metrics(predicted[subset], labels[n:][subset], classes)}
        results[name] = r
        print(f"{name:12s} all: acc {r['all']['accuracy']:.3f} F1 {r['all']['macro_f1']:.3f} "
              f"rho {_signed(r['all']['spearman'])} | {subset_name}: acc {r[subset_name]['accuracy']:.3f} "
              f"F1 {r[subset_name]['macro_f1']:.3f} rho {_signed(r[subset_name]['spearman'])} (l2 {l2:g})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"head": args.head, "max_length": args.max_length, "label": args.label,
                               "band_edges": args.band_edges if args.label == "band" else None,
                               "train_rows": n, "test_rows": len(rows) - n,
                               "test_alpaca_eval_rows": int(alpaca.sum()),
                               "feature_seconds": round(seconds, 1) if seconds is not None else None,
                               "label_tables": tables, "reward_model": {"path": args.rm, "by_band": by_band},
                               "probes": results}, indent=1))
    print(f"{n} training rows, {len(rows) - n} held out ({int(alpaca.sum())} AlpacaEval); "
          f"features {'read' if seconds is None else f'in {seconds:.0f} s'}; "
          f"wrote {out}")


if __name__ == "__main__":
    main()
