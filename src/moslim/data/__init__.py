"""Labelled examples, preference pairs, prompt sets: schema, readers, validation, labelling."""

from moslim.data.labelling import LabellingSpec, load_labelling, verbosity_level, word_count
from moslim.data.readers import read_examples, read_pairs, read_prompts, write_jsonl
from moslim.data.schema import Example, PreferencePair, PromptRecord

__all__ = ["Example", "LabellingSpec", "PreferencePair", "PromptRecord", "load_labelling", "read_examples",
           "read_pairs", "read_prompts", "verbosity_level", "word_count", "write_jsonl"]
