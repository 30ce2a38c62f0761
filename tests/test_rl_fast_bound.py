"""benchmarks/rl_fast.py: the roofline bound of a GRPO step counts the work a step needs, not TRL's padding."""

from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_fast.py"
CONFIG = SimpleNamespace(hidden_size=8, vocab_size=10, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=4)


@pytest.fixture(scope="module")
def module(load_script):
    return load_script(SCRIPT)


def test_the_update_bound_counts_each_prompt_once_and_the_completions_measured_tokens(module):
    def update(prompt_len, rows, prompts, completion_len=None):
        return module.step_bound(CONFIG, num_params=180, prompt_len=prompt_len, rows=rows, prompts=prompts,
                                 new_tokens=16, peak=1.0, bandwidth=1.0, completion_len=completion_len)["update"]

    body, head = 2 * (180 - 80), 2 * 80  # FLOPs per token: the layers' matmuls; the head
    # no attention context to speak of: 1 prompt token, completions of 1 token -> (2 + 4 x 1) tokens' body,
    # 4 tokens' head, QK^T and AV at a context of 1 (4 x 1 layer x 2 heads x 4 dims)
    assert update(1, rows=4, prompts=2, completion_len=1) == pytest.approx(3 * (6 * body + 4 * head + 6 * 32))
    assert update(10, rows=8, prompts=2, completion_len=5) < update(10, rows=8, prompts=2)  # the cap: 16 tokens
    assert update(10, rows=8, prompts=2, completion_len=16) == update(10, rows=8, prompts=2)
    assert update(10, rows=8, prompts=2) < update(10, rows=8, prompts=8)  # shared prompts run once
