"""The baselines MOSLIM is compared with (MORLHF, Rewarded Soups, Rewards-in-Context, prompt-only), built on the
same reward model, the same RL code and the same judges; see docs/baselines.md."""
