#!/bin/bash
# The README's "Against supervised baselines": docs/supervised-baselines.sh [ROUND1_SEARCH] [OUT_DIR]
# ROUND1_SEARCH is round 1's trees of `reasoner pipeline --config configs/iterate.yaml` (default
# runs/iterate/round-1/search; the value model of that round, ../prm, guides the decoders at the end).
# Run from the repository root, with the project installed (`make install`). Prints "row<TAB>greedy" lines (all 500
# synthetic:test problems), the searches' and pairs' audits, the value model's figures and the four decoder tables,
# and leaves every run under OUT_DIR; a run that finished has a .done marker and is not redone.
# About an hour on a 2-core CPU, most of it the two 512-problem searches and the value-guided evals.
set -euo pipefail
SEARCH=${1:-runs/iterate/round-1/search}
O=${2:-runs/rft}
R=${REASONER:-reasoner}
command -v "$R" > /dev/null || { echo "$R not found: activate .venv or set REASONER" >&2; exit 2; }
PY=${PYTHON:-$(dirname "$(command -v "$R")")/python}  # the python beside reasoner: the docs/*.py scripts import it
"$PY" -c "import data.synthetic, prm.model" || { echo "$PY cannot import the project; set PYTHON" >&2; exit 2; }
mkdir -p "$O"
score() { # name: its greedy accuracy
  local acc
  acc=$($R --quiet eval-policy --policy "$O/$1" --k 0 | grep '"greedy":' | tr -dc '0-9.')
  echo -e "$1\t$acc"
}
train() { # name, then a `reasoner train` command's arguments; skipped once it has finished
  local name=$1; shift
  if [ ! -f "$O/$name/.done" ]; then
    $R --quiet train "$@" --output "$O/$name" > "$O/$name.log" 2>&1
    touch "$O/$name/.done"
  fi
  score "$name"
}

# RFT: the distinct correct solutions of the trees (at most 4 per problem, and all of them)
$R label "$SEARCH" --kind rft --output "$O/rft-4.jsonl" > /dev/null
$R label "$SEARCH" --kind rft --max-solutions 1000 --output "$O/rft-all.jsonl" > /dev/null
for seed in 0 1 2; do
  train "rft4-s$seed" sft --data "$O/rft-4.jsonl" --learning_rate 3e-4 --epochs 3 --seed $seed
  train "rftall-s$seed" sft --data "$O/rft-all.jsonl" --learning_rate 3e-4 --epochs 3 --seed $seed
  train "gold-s$seed" sft --data synthetic:train --limit 512 --learning_rate 3e-4 --epochs 3 --seed $seed
done

# One round of the loop on top of gold SFT: search the next 512 problems with it, Step-DPO with the recipe
GOLD=$O/gold-s0
if [ ! -f "$O/gold-search/.done" ]; then  # an interrupted search resumes where it stopped
  $R --quiet search --config configs/search_mcts.yaml --offset 512 --limit 512 --policy "$GOLD" \
    --output "$O/gold-search" > "$O/gold-search.log" 2>&1
  touch "$O/gold-search/.done"
fi
$R label "$O/gold-search" --kind step-dpo --output "$O/gold-step-dpo.jsonl" > /dev/null
dpo() { # name, pairs file, then flags of `reasoner train step-dpo`
  local name=$1 pairs=$2; shift 2
  train "$name" step-dpo --data "$pairs" --model "$GOLD" --beta 0.5 --batch_size 8 "$@"
}
for seed in 0 1 2; do dpo "gold-dpo-s$seed" "$O/gold-step-dpo.jsonl" --learning_rate 2e-5 --epochs 2 --seed $seed; done
dpo gold-dpo-lr1e-5 "$O/gold-step-dpo.jsonl" --learning_rate 1e-5 --epochs 1 --seed 0
dpo gold-dpo-lr5e-5 "$O/gold-step-dpo.jsonl" --learning_rate 5e-5 --epochs 2 --seed 0
dpo gold-dpo-nll "$O/gold-step-dpo.jsonl" --learning_rate 2e-5 --epochs 2 --sft_weight 1 --seed 0

# The same round aimed at the gold-SFT policy's misses: of the 1,536 problems after those, the ones it gets wrong
# greedily (the first 512 of them), against the same continuations on the 512 problems searched above
$R data export synthetic:train "$O/pool.jsonl" --offset 1024 --limit 1536 > /dev/null
$R --quiet eval --policy "$GOLD" --problems "$O/pool.jsonl" --methods greedy --output "$O/pool-eval" > /dev/null
$R data export "$O/pool.jsonl" "$O/missed.jsonl" --missed-by "$O/pool-eval/predictions/greedy.jsonl"
$R data export "$O/missed.jsonl" "$O/missed-512.jsonl" --limit 512 > /dev/null
$R data export synthetic:train "$O/searched-512.jsonl" --offset 512 --limit 512 > /dev/null
if [ ! -f "$O/missed-search/.done" ]; then
  $R --quiet search --config configs/search_mcts.yaml --problems "$O/missed-512.jsonl" --policy "$GOLD" \
    --output "$O/missed-search" > "$O/missed-search.log" 2>&1
  touch "$O/missed-search/.done"
fi
for run in "$SEARCH" "$O/gold-search" "$O/missed-search"; do  # right answers through wrong steps, by run
  echo "$run"; $R search --summary "$run" | grep -E '"pass_at_tree"|"correct_leaves_with_a_wrong_step"'
done
for kind in step-dpo rft; do $R label "$O/missed-search" --kind $kind --output "$O/missed-$kind.jsonl" | grep "records from"; done
$R label "$O/gold-search" --kind rft --output "$O/gold-rft.jsonl" > /dev/null
"$PY" -c "import json, sys; from data.synthetic import step_is_correct as ok
def share(rows, key):
    return sum(ok(r[key]) for r in rows) / max(1, len(rows))
*files, q0 = sys.argv[1:]  # the last file is the misses' pairs; q0: where those with a chosen Q > 0 go
for f in files:
    rows = [json.loads(line) for line in open(f)]
    print(f, 'pairs:', len(rows), 'arithmetic right, chosen / rejected: %.3f / %.3f' % (share(rows, 'chosen'),
                                                                                       share(rows, 'rejected')))
kept = [r for r in rows if r['q_chosen'] > 0]
print('of which Q > 0:', len(kept), 'chosen right: %.3f' % share(kept, 'chosen'))
open(q0, 'w').writelines(json.dumps(r) + '\\n' for r in kept)" "$(dirname "$SEARCH")/labels/step-dpo.jsonl" \
  "$O/gold-step-dpo.jsonl" "$O/missed-step-dpo.jsonl" "$O/missed-step-dpo-q0.jsonl"
for seed in 0 1 2; do
  dpo "missed-dpo-s$seed" "$O/missed-step-dpo.jsonl" --learning_rate 2e-5 --epochs 2 --seed $seed
  for data in missed-rft:missed-rft.jsonl missed-gold:missed-512.jsonl searched-rft:gold-rft.jsonl searched-gold:searched-512.jsonl; do
    train "${data%%:*}-s$seed" sft --data "$O/${data#*:}" --model "$GOLD" --learning_rate 1e-4 --epochs 1 --seed $seed
  done
done
dpo missed-dpo-lr1e-5 "$O/missed-step-dpo.jsonl" --learning_rate 1e-5 --epochs 1 --seed 0
dpo missed-dpo-nll "$O/missed-step-dpo.jsonl" --learning_rate 2e-5 --epochs 2 --sft_weight 1 --seed 0
dpo missed-dpo-q0 "$O/missed-step-dpo-q0.jsonl" --learning_rate 2e-5 --epochs 2 --seed 0

# A value model of the gold-SFT policy's own trees (configs/iterate.yaml's prm settings)
$R label "$O/gold-search" --kind mc-labels --output "$O/gold-mc.jsonl" > /dev/null
$R label "$O/gold-search" --kind svpo --output "$O/gold-svpo.jsonl" > /dev/null
if [ ! -f "$O/gold-prm/.done" ]; then
  $R --quiet train-prm --policy embedded-verifier --head tanh --target hard --likelihood_features true \
    --freeze_backbone true --rank_weight 1.0 --margin 0.5 --max_paths_per_problem 16 --epochs 1 --learning_rate 0.003 \
    --batch_size 32 --eval_steps 100000 --data "$O/gold-mc.jsonl" --pairs "$O/gold-svpo.jsonl" --output "$O/gold-prm" \
    > "$O/gold-prm.log" 2>&1
  touch "$O/gold-prm/.done"
fi
$R --quiet eval-prm "$O/gold-prm" --problems synthetic:test --limit 200 --calibrate-on synthetic:train \
  | grep -E '"step_auc"|"first_error_f1"'

# The misses' pairs whose chosen step the gold-SFT trees' value model scores above 0.5
"$PY" docs/pair-values.py "$O/gold-prm" "$O/missed-step-dpo.jsonl" "$O/missed-step-dpo-v05.jsonl" 0.5
dpo missed-dpo-v05 "$O/missed-step-dpo-v05.jsonl" --learning_rate 2e-5 --epochs 2 --seed 0
# ... and with the gold step as the chosen one, where the prompt follows the gold solution
"$PY" docs/gold-chosen-pairs.py "$O/missed-step-dpo.jsonl" "$O/missed-512.jsonl" "$O/missed-step-dpo-gold.jsonl"
dpo missed-dpo-gold "$O/missed-step-dpo-gold.jsonl" --learning_rate 2e-5 --epochs 2 --seed 0
dpo missed-dpo-gold-nll "$O/missed-step-dpo-gold.jsonl" --learning_rate 2e-5 --epochs 2 --sft_weight 1 --seed 0
dpo missed-dpo-gold-lr1e-4 "$O/missed-step-dpo-gold.jsonl" --learning_rate 1e-4 --epochs 2 --seed 0

# Value-guided decoding on both policies, with round 1's value model and with the gold-SFT trees' one
for value in "$(dirname "$SEARCH")/prm" "$O/gold-prm"; do
  for policy in gold-s0 gold-dpo-s0; do
    out=$O/eval-$policy-$(basename "$(dirname "$value")")-$(basename "$value")
    $R --quiet eval --policy "$O/$policy" --value "$value" --methods greedy,maj@8,bon@8,beam@1x5 \
      --problems synthetic:test --temperature 0.7 --aggregate min --output "$out" > /dev/null
    echo "$policy, value model $value:"; sed -n '/| seconds |/,/^$/p' "$out/report.md"
  done
done
