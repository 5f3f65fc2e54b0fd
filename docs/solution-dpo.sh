#!/bin/bash
# The README's "Step pairs against solution pairs": docs/solution-dpo.sh [SEARCH] [OUT_DIR]
# SEARCH is the training table's MCTS run (`reasoner search --config configs/search_mcts.yaml`, default
# runs/search-train: 512 synthetic:train problems searched by the embedded policy). Run from the repository root
# with the project installed (`make install`). Prints "row<TAB>greedy" lines (all 500 synthetic:test problems) and
# the pair counts, and leaves every run under OUT_DIR; a run that finished has a .done marker and is not redone.
# About 2 h on a 2-core CPU: 25 trainings of 2-9 min, each scored greedily, a 512-problem search and an SFT.
set -euo pipefail
SEARCH=${1:-runs/search-train}
O=${2:-runs/solution-dpo}
R=${REASONER:-reasoner}
command -v "$R" > /dev/null || { echo "$R not found: activate .venv or set REASONER" >&2; exit 2; }
mkdir -p "$O"
score() { # name: its greedy accuracy (kept in NAME/greedy.txt, so a re-run does not score it again)
  if [ ! -f "$O/$1/greedy.txt" ]; then
    $R --quiet eval-policy --policy "$O/$1" --k 0 | grep '"greedy":' | tr -dc '0-9.' > "$O/$1/greedy.tmp"
    mv "$O/$1/greedy.tmp" "$O/$1/greedy.txt"
  fi
  echo -e "$1\t$(cat "$O/$1/greedy.txt")"
}
train() { # name, then a `reasoner train` command's arguments; skipped once it has finished
  local name=$1; shift
  if [ ! -f "$O/$name/.done" ]; then
    $R --quiet train "$@" --output "$O/$name" > "$O/$name.log" 2>&1
    rm -rf "$O/$name"/checkpoint-*
    touch "$O/$name/.done"
  fi
  score "$name"
}
label() { # search run, kind, output file, then `reasoner label` flags
  local run=$1 kind=$2 out=$3; shift 3
  $R label "$run" --kind "$kind" --output "$out" "$@" | grep "records from"
}

# From the embedded policy (44.4 %), on its own trees: step pairs (the recipe) against whole-solution pairs
label "$SEARCH" step-dpo "$O/step-dpo.jsonl"
label "$SEARCH" dpo "$O/dpo.jsonl"
for seed in 0 1 2; do
  train "step-dpo-s$seed" step-dpo --config configs/step_dpo.yaml --data "$O/step-dpo.jsonl" --seed $seed
  train "dpo-s$seed" dpo --data "$O/dpo.jsonl" --learning_rate 2e-5 --epochs 2 --seed $seed
  train "rpo-s$seed" dpo --data "$O/dpo.jsonl" --learning_rate 2e-5 --epochs 2 --sft_weight 1 --seed $seed
done
train dpo-b0.5 dpo --data "$O/dpo.jsonl" --beta 0.5 --learning_rate 2e-5 --epochs 2 --seed 0
train dpo-lr1e-4 dpo --data "$O/dpo.jsonl" --learning_rate 1e-4 --epochs 2 --seed 0
train rpo-lr1e-4 dpo --data "$O/dpo.jsonl" --learning_rate 1e-4 --epochs 2 --sft_weight 1 --seed 0
# As many solution pairs as step pairs: up to 30 per problem instead of 10
label "$SEARCH" dpo "$O/dpo-30.jsonl" --max-pairs 30
train dpo30-s0 dpo --data "$O/dpo-30.jsonl" --learning_rate 2e-5 --epochs 2 --seed 0
train rpo30-s0 dpo --data "$O/dpo-30.jsonl" --learning_rate 2e-5 --epochs 2 --sft_weight 1 --seed 0

# From the gold-SFT policy (the README's supervised baseline, seed 0), on trees it grew over the next 512
# problems: does a whole-solution pair move it where a step pair does not?
GOLD=$O/gold-s0
if [ ! -f "$GOLD/.done" ]; then
  $R --quiet train sft --data synthetic:train --limit 512 --learning_rate 3e-4 --epochs 3 --seed 0 --output "$GOLD" \
    > "$GOLD.log" 2>&1
  touch "$GOLD/.done"
fi
score gold-s0
if [ ! -f "$O/gold-search/.done" ]; then  # an interrupted search resumes where it stopped
  $R --quiet search --config configs/search_mcts.yaml --offset 512 --limit 512 --policy "$GOLD" \
    --output "$O/gold-search" > "$O/gold-search.log" 2>&1
  touch "$O/gold-search/.done"
fi
label "$O/gold-search" step-dpo "$O/gold-step-dpo.jsonl"
label "$O/gold-search" dpo "$O/gold-dpo.jsonl"
for seed in 0 1 2; do
  train "gold-step-dpo-s$seed" step-dpo --config configs/step_dpo.yaml --data "$O/gold-step-dpo.jsonl" \
    --model "$GOLD" --seed $seed
  train "gold-dpo-s$seed" dpo --data "$O/gold-dpo.jsonl" --model "$GOLD" --learning_rate 2e-5 --epochs 2 --seed $seed
  train "gold-rpo-s$seed" dpo --data "$O/gold-dpo.jsonl" --model "$GOLD" --learning_rate 2e-5 --epochs 2 \
    --sft_weight 1 --seed $seed
done
train gold-dpo-lr1e-4 dpo --data "$O/gold-dpo.jsonl" --model "$GOLD" --learning_rate 1e-4 --epochs 2 --seed 0
train gold-rpo-lr1e-4 dpo --data "$O/gold-dpo.jsonl" --model "$GOLD" --learning_rate 1e-4 --epochs 2 --sft_weight 1 \
  --seed 0
