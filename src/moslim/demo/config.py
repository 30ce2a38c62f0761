"""The demo's configuration (``moslim demo --config``): which config and overrides each stage takes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageSection:
    config: str = ""  # the stage command's YAML (relative to the working folder or the repository)
    overrides: list[str] = field(default_factory=list)  # dotted overrides passed to that command


@dataclass
class DemoConfig:
    out: str = "runs/demo"  # every stage writes under this folder
    models: list[str] = field(default_factory=lambda: ["smollm2-135m-instruct", "all-minilm-l6-v2"])
    rm: StageSection = field(default_factory=lambda: StageSection("configs/demo/rm.yaml"))
    # The independent judge model; null skips the stage (eval then judges with the exact and refusal rules only).
    judge: StageSection | None = field(default_factory=lambda: StageSection("configs/demo/judge.yaml"))
    rl: StageSection = field(default_factory=lambda: StageSection("configs/demo/rl.yaml"))
    eval: StageSection = field(default_factory=lambda: StageSection("configs/demo/eval.yaml"))
