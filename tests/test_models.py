import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moslim import models


def test_local_folder_resolves_to_itself(tiny_causal_lm_dir):
    assert models.resolve(tiny_causal_lm_dir) == str(tiny_causal_lm_dir)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        models.resolve(tmp_path)


def test_missing_local_path_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        models.resolve(str(tmp_path / "nope"))


def test_offline_hub_id_names_the_builtins(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="smollm2-135m-instruct, all-minilm-l6-v2"):
        models.resolve("someone/some-model-that-is-not-cached")


def test_online_hub_id_is_passed_through(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unknown_builtin_lists_valid_names():
    with pytest.raises(ValueError, match="built-ins: smollm2-135m-instruct"):
        models.prepare("gpt-5")


def test_minilm_builtin_is_a_loadable_encoder():
    from transformers import AutoModel, AutoTokenizer

    path = models.resolve("all-minilm-l6-v2")
    encoder = AutoModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    out = encoder(**tokenizer(["a cat sat on the mat"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 384


def test_stale_temp_of_dead_process_is_removed(tmp_path):
    target = tmp_path / "smollm2-135m-instruct"
    dead = tmp_path / ".smollm2-135m-instruct.999999999.abc"
    alive = tmp_path / f".smollm2-135m-instruct.{os.getpid()}.abc"
    dead.mkdir()
    alive.mkdir()
    models._remove_stale_temps(target)
    assert not dead.exists() and alive.exists()


@pytest.mark.slow
def test_smollm2_conversion_killed_half_way_leaves_nothing_and_reruns(tmp_path, monkeypatch):
    """SIGKILL during conversion: no final folder appears; the next prepare redoes it and loads."""
    env = dict(os.environ, MOSLIM_CACHE=str(tmp_path))
    code = "from moslim import models; models.prepare('smollm2-135m-instruct')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "models"
    target = root / "smollm2-135m-instruct"
    deadline = time.time() + 120
    temps: list = []
    while time.time() < deadline and proc.poll() is None:  # kill while the temp folder is being filled
        temps = list(root.glob(".smollm2-135m-instruct.*")) if root.exists() else []
        if temps:
            time.sleep(0.5)  # let it get some way into loading / writing
            break
        time.sleep(0.05)
    finished_first = target.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert temps, "conversion never created its temporary folder"
    assert not finished_first, "conversion finished before it could be killed"
    assert not (root / "smollm2-135m-instruct").exists()

    monkeypatch.setenv("MOSLIM_CACHE", str(tmp_path))
    assert not models.is_prepared("smollm2-135m-instruct")
    path = models.prepare("smollm2-135m-instruct")
    assert Path(path) == root / "smollm2-135m-instruct"
    assert not list(root.glob(".smollm2-135m-instruct.*")), "the killed run's temp folder was not cleaned"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
