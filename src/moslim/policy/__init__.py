"""Policy optimisation with the MOSLIM reward: the TRL reward callable, RL training, generation."""
