"""The RL run's curves as a PNG: reward, per-objective hit rate, mean completion length, step-time split."""

from __future__ import annotations

from pathlib import Path


def plot_run(steps: list[dict], path: str | Path, title: str = "") -> Path:
    """steps: the per-step dicts of ``moslim_run.json``; writes a 2x2 figure to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s["step"] for s in steps]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (ax_reward, ax_hit), (ax_len, ax_time) = axes

    ax_reward.plot(x, [s.get("reward") for s in steps], marker=".")
    ax_reward.set_title("mean reward (MOSLIM mapping)")

    names = sorted({k.split("/")[1] for s in steps for k in s if k.endswith("/hit_rate")})
    for name in names:
        ax_hit.plot(x, [s.get(f"moslim/{name}/hit_rate") for s in steps], marker=".", label=name)
    ax_hit.set_title("hit rate (reward model's argmax level == target)")
    ax_hit.set_ylim(-0.02, 1.02)
    ax_hit.legend(fontsize=8)

    ax_len.plot(x, [s.get("completions/mean_length") for s in steps], marker=".")
    ax_len.set_title("mean completion length (tokens)")

    bottom = [0.0] * len(steps)
    for key in ("generation", "reward", "update"):
        values = [s.get(f"time/{key}") or 0.0 for s in steps]
        ax_time.bar(x, values, bottom=bottom, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax_time.set_title("step time split (s)")
    ax_time.legend(fontsize=8)

    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
