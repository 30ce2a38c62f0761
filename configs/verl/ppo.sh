#!/usr/bin/env bash
# bash configs/verl/ppo.sh [verl overrides ...]
# PPO (GAE with a critic, the paper's main algorithm) on verl against the MOSLIM reward; the same data and reward
# function as configs/verl/grpo.sh. NOT run by this project (no GPU, verl not installed). Details: docs/scaling.md.
set -euo pipefail
RL_CONFIG=${RL_CONFIG:-configs/rl.yaml}
REWARD_MODEL=${REWARD_MODEL:-$PWD/runs/demo/rm}
POLICY=${POLICY:-HuggingFaceTB/SmolLM2-135M-Instruct}
DATA=${DATA:-$HOME/data/moslim}
GPUS=${GPUS:-8}

moslim data export --format verl --config "$RL_CONFIG" --out "$DATA/train.parquet"
moslim data export --format verl --config "$RL_CONFIG" --out "$DATA/val.parquet" --split test \
  data.prompts=moslim:assets/demo/prompts_eval.jsonl data.preferences_per_prompt=1
REWARD_FN=$(python3 -c "import moslim.serve.verl_reward as m; print(m.__file__)")

python3 -m verl.trainer.main_ppo \
  algorithm.adv_estimator=gae algorithm.use_kl_in_reward=True \
  data.train_files="$DATA/train.parquet" data.val_files="$DATA/val.parquet" data.prompt_key=prompt \
  data.train_batch_size=256 data.max_prompt_length=256 data.max_response_length=256 \
  data.filter_overlong_prompts=True data.truncation=error \
  actor_rollout_ref.model.path="$POLICY" \
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
  actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.n=1 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16 \
  critic.model.path="$POLICY" critic.optim.lr=1e-5 critic.ppo_micro_batch_size_per_gpu=16 \
  reward.custom_reward_function.path="$REWARD_FN" reward.custom_reward_function.name=compute_score \
  +reward.custom_reward_function.reward_kwargs.model="$REWARD_MODEL" \
  trainer.logger='["console"]' trainer.project_name=moslim trainer.experiment_name=ppo \
  trainer.n_gpus_per_node="$GPUS" trainer.nnodes=1 trainer.total_epochs=1 trainer.critic_warmup=0 \
  trainer.save_freq=50 trainer.test_freq=25 \
  "$@"
