"""benchmarks/update_padding.py: the batch it times has the demo-like completion lengths it claims."""

from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "update_padding.py"


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_the_batch_holds_groups_sharing_a_prompt_and_completions_of_the_stated_lengths(module):
    ids, mask, n = module.batch(prompt_tokens=12, groups=4)
    assert ids.shape == mask.shape == (16, 12 + 128) and n == 128
    assert mask[:, 12:].sum(1).tolist() == module.LENGTHS  # each completion as long as stated, then padding
    assert (ids[:4, :12] == ids[0, :12]).all() and not (ids[4, :12] == ids[0, :12]).all()  # 4 groups of 4
    assert mask[:4, :10].sum() == 0 and mask[4:, :12].all()  # the first group's prompt is left-padded
