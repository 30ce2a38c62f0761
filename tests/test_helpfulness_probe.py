"""benchmarks/helpfulness_probe.py: linear probes on hidden states, the label table, and the features' cache."""

import argparse
import gzip
import json
from pathlib import Path

import pytest
import torch

from moslim.data.schema import Example

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "helpfulness_probe.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_a_probe_finds_levels_that_the_features_separate(module):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=g)
    x = torch.randn(300, 8, generator=g) * 0.3
    x[:, 0] += labels.float() * 2  # one direction holds the level
    predicted, l2 = module.probe(x[:200], labels[:200], x[200:], classes=3)
    assert l2 in module.LAMBDAS
    assert (predicted == labels[200:]).float().mean() > 0.9
    m = module.metrics(predicted, labels[200:], 3)
    assert m["n"] == 100 and m["macro_f1"] > 0.9 and m["spearman"] > 0.9


def test_features_read_each_row_where_a_plain_unpadded_forward_does(module, tiny_causal_lm_dir, tiny_tokenizer):
    from transformers import AutoModel

    from moslim.reward.encoding import Encoded

    backbone = AutoModel.from_pretrained(tiny_causal_lm_dir).eval()
    ids = [tiny_tokenizer("what is the capital of france ?")["input_ids"],
           tiny_tokenizer("one two")["input_ids"],
           tiny_tokenizer("how can i help you with water ?")["input_ids"]]
    encoded = [Encoded(i, None, 1) for i in ids]  # the question ends at token 1

    class Bar:
        done = 0

        def update(self, n):
            self.done += n

    bar = Bar()
    feats = module.features(backbone, encoded, tiny_tokenizer.pad_token_id, [1, 2], batch_size=2, progress=bar)
    assert bar.done == 3 and set(feats) == {f"{kind}@{layer}" for kind in ("last", "mean", "qend") for layer in (1, 2)}
    for row, seq in enumerate(ids):  # batches are sorted by length and right-padded: each row must be its own
        with torch.inference_mode():
            hidden = backbone(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states
        for layer in (1, 2):
            assert torch.allclose(feats[f"last@{layer}"][row], hidden[layer][0, -1], atol=1e-5)
            assert torch.allclose(feats[f"mean@{layer}"][row], hidden[layer][0].mean(0), atol=1e-5)
            assert torch.allclose(feats[f"qend@{layer}"][row], hidden[layer][0, 1], atol=1e-5)


def _rows(n: int, offset: int = 0) -> list[Example]:
    return [Example(id=f"alpaca_eval/m{i + offset}/{i:03d}", prompt="what is the capital of france ?",
                    response="paris is the capital city of france ." * (1 + i % 3), labels={"helpfulness": i % 3})
            for i in range(n)]


def test_features_are_saved_and_read_back_only_for_the_same_rows(module, tiny_causal_lm_dir, tmp_path):
    from tqdm import tqdm

    args = argparse.Namespace(features=str(tmp_path / "f.safetensors"), layers=[1, 2], max_length=64, batch_size=2)
    first, seconds = module.cached_features(args, str(tiny_causal_lm_dir), _rows(4), tqdm)
    assert seconds is not None and (tmp_path / "f.safetensors").exists()
    again, seconds = module.cached_features(args, str(tiny_causal_lm_dir), _rows(4), tqdm)
    assert seconds is None and all(torch.equal(first[k], again[k]) for k in first)
    _, seconds = module.cached_features(args, str(tiny_causal_lm_dir), _rows(4, offset=1), tqdm)
    assert seconds is not None  # other rows: computed again, not read
    args.layers = [1, 2, 0]
    _, seconds = module.cached_features(args, str(tiny_causal_lm_dir), _rows(4, offset=1), tqdm)
    assert seconds is not None  # a layer the file lacks


def test_the_label_table_counts_levels_per_band_of_the_judges_preference(module, tmp_path):
    path = tmp_path / "responses.jsonl.gz"
    preferences = {"m0/000": 1.0, "m1/001": 1.0004, "m2/002": 1.002, "m3/003": 1.7}
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for id_, p in preferences.items():
            f.write(json.dumps({"id": id_, "instruction_idx": int(id_[-3:]), "instruction": "q", "output": "x",
                                "generator": id_[:2], "preference": p}) + "\n")
    preferences = module.read_preferences(path)  # named as the shipped rows are
    assert preferences == {"alpaca_eval/m0/000": 1.0, "alpaca_eval/m1/001": 1.0004, "alpaca_eval/m2/002": 1.002,
                           "alpaca_eval/m3/003": 1.7}
    table = module.label_table(_rows(4), preferences)
    assert table["[1, 1.0005)"] == [1, 1, 0]  # rows 0 and 1: levels 0 and 1, both where the reference surely wins
    assert table["[1.0005, 1.01)"] == [0, 0, 1]
    assert table["[1.5, 2)"] == [1, 0, 0]
    assert sum(map(sum, table.values())) == 4


def test_a_probe_that_predicts_one_level_has_no_spearman_rather_than_nan(module):
    m = module.metrics(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 1]), 3)
    assert m["spearman"] is None and m["accuracy"] == 0.25
    json.dumps(m, allow_nan=False)  # the written figures stay valid JSON


@pytest.mark.parametrize("argv, message", [
    (["--head", "tone"], "the rows label helpfulness, verbosity, harmlessness, unsafe_request, refusal"),
    (["--head", "unsafe_request", "--label", "band"], "helpfulness only"),
])
def test_a_head_the_rows_do_not_label_or_a_band_of_another_head_is_refused_before_any_work(module, monkeypatch,
                                                                                          argv, message):
    monkeypatch.setattr("sys.argv", ["helpfulness_probe.py", *argv])
    with pytest.raises(SystemExit, match=message):
        module.main()
