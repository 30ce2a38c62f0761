#!/usr/bin/env bash
# bash configs/verl/grpo.sh [verl overrides ...]
# GRPO on verl (>= 0.10, `python3 -m verl.trainer.main_ppo`) against the MOSLIM reward: the RL prompts exported
# with their preference in extra_info, verl's naive reward manager calling moslim's compute_score in-process.
# Needs: verl + vLLM installed next to moslim, a reward model folder (moslim rm train), GPUs. NOT run by this
# project (no GPU, verl not installed); tests/serve/test_export_contracts.py checks the exported rows against
# moslim's compute_score on CPU. Details: docs/scaling.md.
set -euo pipefail
RL_CONFIG=${RL_CONFIG:-configs/rl.yaml}            # its data section: prompts, num_named, seed, ...
REWARD_MODEL=${REWARD_MODEL:-$PWD/runs/demo/rm}    # absolute: verl's reward workers run elsewhere
POLICY=${POLICY:-HuggingFaceTB/SmolLM2-135M-Instruct}
DATA=${DATA:-$HOME/data/moslim}
GPUS=${GPUS:-8}

moslim data export --format verl --config "$RL_CONFIG" --out "$DATA/train.parquet"
moslim data export --format verl --config "$RL_CONFIG" --out "$DATA/val.parquet" --split test \
  data.prompts=moslim:assets/demo/prompts_eval.jsonl data.preferences_per_prompt=1
REWARD_FN=$(python3 -c "import moslim.serve.verl_reward as m; print(m.__file__)")

python3 -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  data.train_files="$DATA/train.parquet" data.val_files="$DATA/val.parquet" data.prompt_key=prompt \
  data.train_batch_size=256 data.max_prompt_length=256 data.max_response_length=256 \
  data.filter_overlong_prompts=True data.truncation=error \
  actor_rollout_ref.model.path="$POLICY" \
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16 \
  actor_rollout_ref.actor.use_kl_loss=True actor_rollout_ref.actor.kl_loss_coef=0.001 \
  actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 actor_rollout_ref.rollout.gpu_memory_utilization=0.5 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16 \
  reward.custom_reward_function.path="$REWARD_FN" reward.custom_reward_function.name=compute_score \
  +reward.custom_reward_function.reward_kwargs.model="$REWARD_MODEL" \
  trainer.logger='["console"]' trainer.project_name=moslim trainer.experiment_name=grpo \
  trainer.n_gpus_per_node="$GPUS" trainer.nnodes=1 trainer.total_epochs=1 trainer.save_freq=50 trainer.test_freq=25 \
  "$@"
