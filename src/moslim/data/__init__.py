"""Labelled examples, preference pairs, prompt sets: schema, readers, validation, labelling."""

from moslim.data.schema import Example, PreferencePair, PromptRecord

__all__ = ["Example", "PreferencePair", "PromptRecord"]
