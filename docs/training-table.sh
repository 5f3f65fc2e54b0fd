#!/bin/bash
# The README's one-round training table for one training seed: docs/training-table.sh SEED [OUT_DIR]
# Needs the labels of the README's MCTS run (configs/search_mcts.yaml, then `reasoner label` for step-dpo,
# svpo, step-apo and step-rewards into runs/labels/). Appends "row<TAB>seed<TAB>greedy" to OUT_DIR/results.tsv.
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
run step-dpo $R train step-dpo --config configs/step_dpo.yaml
run sdpo-nll $R train step-dpo --config configs/step_dpo.yaml --sft_weight 1
run nll-only $R train step-dpo --config configs/step_dpo.yaml --beta 1e-6 --sft_weight 1
run svpo $R train svpo --config configs/svpo.yaml
run apo $R train step-apo --data $L/step-apo.jsonl --beta 0.5 --alpha 1 --learning_rate 1e-4 --epochs 2 --sft_weight 1
run apo2 $R train step-apo --data $L/step-apo.jsonl --beta 0.5 --alpha 1 --learning_rate 2e-4 --epochs 1 --sft_weight 1
run sdpo-trl $R train step-dpo --config configs/step_dpo.yaml --beta 0.1 --learning_rate 5e-5 --epochs 1
run sdpo-hot $R train step-dpo --config configs/step_dpo.yaml --beta 0.1 --learning_rate 5e-4 --epochs 2
run fsd $R train full-step-dpo --data $L/step-rewards.jsonl --beta 0.05 --token_rate 1 --reward_temp 0.5 --learning_rate 1e-4 --epochs 2
run tg $R train tree-grpo --config configs/tree_grpo.yaml
run svpo-nonll $R train svpo --config configs/svpo.yaml --learning_rate 1e-4 --epochs 2 --sft_weight 0
