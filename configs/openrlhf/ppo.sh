#!/usr/bin/env bash
# bash configs/openrlhf/ppo.sh [OpenRLHF arguments ...]
# PPO on OpenRLHF (>= 0.11, `python3 -m openrlhf.cli.train_ppo_ray`, Ray + vLLM) with the MOSLIM reward from a
# running `moslim serve` (its /get_reward): the RL prompts exported with the preference in the system message
# and in the label column. Start the reward server first, on a machine the Ray workers can reach:
#   moslim serve --reward-model runs/demo/rm --host 0.0.0.0 --port 8000 --max-batch 64
# ESTIMATOR=group_norm N_SAMPLES=8 runs GRPO instead (no critic). NOT run by this project (no GPU, OpenRLHF not
# installed); tests/serve/test_export_contracts.py checks the exported rows against /get_reward on CPU.
set -euo pipefail
RL_CONFIG=${RL_CONFIG:-configs/rl.yaml}
POLICY=${POLICY:-HuggingFaceTB/SmolLM2-135M-Instruct}
REWARD_URL=${REWARD_URL:-http://127.0.0.1:8000/get_reward}
DATA=${DATA:-$HOME/data/moslim/openrlhf_prompts.jsonl}
ESTIMATOR=${ESTIMATOR:-gae}   # gae = PPO with a critic; group_norm = GRPO; rloo, reinforce_baseline, ...
N_SAMPLES=${N_SAMPLES:-1}
GPUS=${GPUS:-8}

moslim data export --format openrlhf --config "$RL_CONFIG" --out "$DATA"
CRITIC=()
if [[ $ESTIMATOR == gae ]]; then
  CRITIC=(--critic.model_name_or_path "$POLICY" --critic.num_nodes 1 --critic.num_gpus_per_node "$GPUS"
          --critic.adam.lr 9e-6)
fi

python3 -m openrlhf.cli.train_ppo_ray \
  --ref.num_nodes 1 --ref.num_gpus_per_node "$GPUS" \
  --actor.num_nodes 1 --actor.num_gpus_per_node "$GPUS" \
  --vllm.num_engines "$GPUS" --vllm.tensor_parallel_size 1 --vllm.gpu_memory_utilization 0.5 \
  --train.colocate_all --vllm.enable_sleep --ds.enable_sleep \
  --actor.model_name_or_path "$POLICY" "${CRITIC[@]}" \
  --reward.remote_url "$REWARD_URL" \
  --data.prompt_dataset "$DATA" --data.input_key input --data.label_key label --data.apply_chat_template \
  --algo.advantage.estimator "$ESTIMATOR" --rollout.n_samples_per_prompt "$N_SAMPLES" \
  --algo.kl.init_coef 0.01 --actor.adam.lr 1e-6 \
  --train.batch_size 128 --train.micro_batch_size 8 --rollout.batch_size 256 --rollout.micro_batch_size 16 \
  --data.max_len 1024 --rollout.max_new_tokens 256 --train.max_epochs 1 \
  --ds.zero_stage 2 --ds.param_dtype bf16 \
  --ckpt.output_dir runs/openrlhf_"$ESTIMATOR" --ckpt.save_hf \
  "$@"
