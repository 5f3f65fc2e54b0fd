#!/bin/bash
# The README's one-round training table for one training seed: docs/training-table.sh SEED [OUT_DIR]
# Needs the labels of the README's MCTS run (configs/search_mcts.yaml, then `reasoner label` for step-dpo,
# svpo, step-apo, mcts-dpo and step-rewards into runs/labels/). Appends "row<TAB>seed<TAB>greedy" to
# OUT_DIR/results.tsv. HOT=1 runs the rows of the table "at the hotter rates" instead.
set -u
SEED=${1:?usage: docs/training-table.sh SEED [OUT_DIR]}
O=${2:-runs/seeds}
R=${REASONER:-reasoner}
mkdir -p "$O"
run() { # row name, then the training command
  local name=$1; shift
  local dir=$O/$name-s$SEED
  rm -rf "$dir"
  "$@" --seed "$SEED" --output "$dir" > "$dir.log" 2>&1 || { echo "$name: training failed, see $dir.log"; return; }
  local greedy
  greedy=$($R eval-policy --policy "$dir" --k 0 2>/dev/null | grep '"greedy":' | tr -dc '0-9.')
  echo -e "$name\t$SEED\t$greedy" | tee -a "$O/results.tsv"
  rm -rf "$dir"/checkpoint-*
}
L=runs/labels
FSD="$R train full-step-dpo --data $L/step-rewards.jsonl --beta 0.05 --token_rate 1 --reward_temp 0.5 --epochs 2"
if [ "${HOT:-0}" = 1 ]; then  # the recipes' rates before they moved to 2e-5
  run step-dpo $R train step-dpo --config configs/step_dpo.yaml --learning_rate 1e-4
  run sdpo-nll $R train step-dpo --config configs/step_dpo.yaml --learning_rate 1e-4 --sft_weight 1
  run nll-only $R train step-dpo --config configs/step_dpo.yaml --learning_rate 1e-4 --beta 1e-6 --sft_weight 1
  run svpo $R train svpo --config configs/svpo.yaml --learning_rate 2e-4
  run svpo-nonll $R train svpo --config configs/svpo.yaml --learning_rate 1e-4 --epochs 2 --sft_weight 0
  run apo $R train step-apo --data $L/step-apo.jsonl --beta 0.5 --alpha 1 --learning_rate 1e-4 --epochs 2 --sft_weight 1
  run apo2 $R train step-apo --data $L/step-apo.jsonl --beta 0.5 --alpha 1 --learning_rate 2e-4 --epochs 1 --sft_weight 1
  run sdpo-trl $R train step-dpo --config configs/step_dpo.yaml --beta 0.1 --learning_rate 5e-5 --epochs 1
  run sdpo-hot $R train step-dpo --config configs/step_dpo.yaml --beta 0.1 --learning_rate 5e-4 --epochs 2
  run fsd-lr2e-5 $FSD --learning_rate 2e-5
  run mcts-dpo $R train mcts-dpo --data $L/mcts-dpo.jsonl --learning_rate 1e-4 --epochs 2
  run mcts-dpo-online-lr2e-5 $R train mcts-dpo-online --config configs/mcts_dpo_online.yaml --learning_rate 2e-5
  exit
fi
run step-dpo-lr2e-5 $R train step-dpo --config configs/step_dpo.yaml
run sdpo-nll-lr2e-5 $R train step-dpo --config configs/step_dpo.yaml --sft_weight 1
run nll-only-lr2e-5 $R train step-dpo --config configs/step_dpo.yaml --beta 1e-6 --sft_weight 1
run svpo-lr2e-5 $R train svpo --config configs/svpo.yaml
run svpo-nonll-lr2e-5 $R train svpo --config configs/svpo.yaml --sft_weight 0
run apo-b0.3-a1-lr2e-5 $R train step-apo --config configs/step_apo.yaml
run apo-b0.3-a0-lr2e-5 $R train step-apo --config configs/step_apo.yaml --alpha 0
run fsd $FSD --learning_rate 1e-4
run mcts-dpo-lr2e-5 $R train mcts-dpo --data $L/mcts-dpo.jsonl --beta 0.1 --epochs 2 --learning_rate 2e-5
run tg $R train tree-grpo --config configs/tree_grpo.yaml
run mcts-dpo-online $R train mcts-dpo-online --config configs/mcts_dpo_online.yaml
run mcts-dpo-online-commit $R train mcts-dpo-online --config configs/mcts_dpo_online.yaml --commit_simulations 8
