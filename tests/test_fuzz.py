"""Property-based fuzzing of what reads user input: arbitrary bytes or text in, a value or a ValueError out,
never another exception (a traceback for the user)."""

import gzip
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moslim.config import load_config
from moslim.data.readers import read_examples, read_pairs, read_prompts
from moslim.objectives import ObjectiveSet
from moslim.policy.train import RLConfig
from moslim.preferences import Preference
from moslim.reward.config import RewardTrainConfig

OBJECTIVES = ObjectiveSet.from_dict({"objectives": [
    {"name": "helpfulness", "levels": ["a", "b", "c"]}, {"name": "verbosity", "levels": ["a", "b", "c", "d"]}]})
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that look like our files often enough to reach the parsers, plus noise.
JSONISH = st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list('{}[]":,0123456789 \n\tabcnlrseptuv-.\\é\x00')), max_size=300)
    .map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.lists(st.dictionaries(st.sampled_from(["prompt", "response", "labels", "chosen", "rejected", "objective",
                                              "id", "verbosity"]),
                             st.one_of(st.none(), st.integers(-3, 9), st.text(max_size=8), st.booleans(),
                                       st.lists(st.integers(), max_size=2),
                                       st.dictionaries(st.sampled_from(["verbosity", "helpfulness", "x"]),
                                                       st.integers(-2, 5), max_size=2)),
                             max_size=5), max_size=4)
    .map(lambda rows: "".join(__import__("json").dumps(r) + "\n" for r in rows).encode()),
)


def _read_all(path: Path) -> None:
    for reader in (lambda p: read_examples(p, OBJECTIVES), lambda p: read_pairs(p, OBJECTIVES), read_prompts):
        try:
            reader(path)
        except ValueError as err:
            assert str(path) in str(err), f"the message does not name the file: {err}"


@FUZZ
@given(data=JSONISH, suffix=st.sampled_from([".jsonl", ".json", ".csv", ".jsonl.gz", ".csv.gz"]),
       compress=st.booleans(), cut=st.integers(0, 40))
def test_readers_give_records_or_a_value_error(data, suffix, compress, cut):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f{suffix}"
        if suffix.endswith(".gz") and compress:
            data = gzip.compress(data)
            data = data[: max(0, len(data) - cut)]  # truncated archives too
        path.write_bytes(data)
        _read_all(path)


@FUZZ
@given(text=st.text(max_size=60))
def test_preference_parser_gives_a_preference_or_a_value_error(text):
    try:
        Preference.parse(text, OBJECTIVES)
    except ValueError:
        pass


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("abcdefghilmnoprstuvwxyz_=.:,0123456789-{}[] \n'\"")),
                    max_size=20).map(lambda s: "helpfulness=" + s) | st.text(max_size=40))
def test_preference_parser_on_near_valid_strings(text):
    try:
        Preference.parse(text, OBJECTIVES)
    except ValueError:
        pass


YAML_KEYS = ["model", "data", "train", "trl", "policy", "reward", "output_dir", "max_steps", "lr", "batch_size",
             "epochs", "method", "options", "num_named", "level_weights", "seed", "backbone", "freeze_layers"]


@FUZZ
@given(text=st.one_of(st.text(max_size=120),
                      st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                                             st.text(max_size=6)),
                                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                                       st.sampled_from(YAML_KEYS), inner, max_size=3), max_leaves=8)
                      .map(lambda v: __import__("yaml").safe_dump(v))),
       overrides=st.lists(st.text(max_size=25), max_size=2),
       cls=st.sampled_from([RewardTrainConfig, RLConfig]))
def test_config_loader_gives_a_config_or_a_value_error(text, overrides, cls):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            config = load_config(cls, path, overrides)
            if cls is RLConfig:
                config.check()
        except ValueError as err:
            named = str(path) in str(err) or "override" in str(err) or "." in str(err).split(":")[0]
            assert named, f"the message names no place: {err}"
