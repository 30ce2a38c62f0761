"""scripts/gpu_check.py on CPU with tiny sizes, so the GPU check cannot rot between GPU runs; and the shell
wrapper's pieces (syntax, the wheel list matching pyproject's TRL pin)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_every_stage_on_cpu_tiny(tmp_path, capsys):
    gpu_check = load_script()
    out = tmp_path / "report.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--workdir", str(tmp_path / "work"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rm = report["rm"]
    assert rm["steps"] == 2 and rm["tokens_per_s"] > 0 and rm["peak_gib"] > 0
    for algorithm in ("grpo", "ppo"):
        rl = report[algorithm]
        assert rl["steps"] == 2 and rl["generated_tokens_per_s"] > 0 and rl["generation_s"] > 0, algorithm
    printed = capsys.readouterr().out
    assert re.search(r"^rm: .* tokens/s, .* peak [0-9.]+ GiB$", printed, re.M)
    assert re.search(r"^grpo: .* generated tokens/s, .* peak [0-9.]+ GiB$", printed, re.M)
    assert re.search(r"^ppo: .* generated tokens/s, .* peak [0-9.]+ GiB$", printed, re.M)
    assert "gpu_check: OK" in printed
    # the policy and reward model are safetensors folders built from configs, nothing downloaded
    assert (tmp_path / "work" / "policy" / "model.safetensors").exists()
    assert (tmp_path / "work" / "rm" / "objectives.yaml").exists()


def test_full_sizes_are_smollm2_135m():
    from transformers import LlamaConfig, LlamaForCausalLM

    gpu_check = load_script()
    with __import__("torch").device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**gpu_check.SMOLLM2_135M))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 135  # tied embeddings counted once
    assert len(gpu_check.build_tokenizer(gpu_check.SMOLLM2_135M["vocab_size"])) == 49152


def test_shell_wrapper_parses_and_pins_the_trl_it_is_tested_with():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")], check=True)
    pins = dict(line.split("==") for line in (ROOT / "scripts" / "gpu_check_wheels.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    from importlib.metadata import version

    assert pins["trl"] == version("trl")  # the version the suite ran the fast path against
    pyproject = (ROOT / "pyproject.toml").read_text()
    low = re.search(r"\"trl>=([0-9.]+),<[0-9.]+\"", pyproject).group(1)
    assert pins["trl"].startswith(low)
