#!/usr/bin/env bash
# The whole CPU recipe (docs/training.md): SFT -> sample the SFT model -> WRPO -> evaluate.
# Usage: bash trainers/recipes/gsm8k_cpu.sh [DATA_DIR] [STORE]
# Sizes (env): SFT_ROWS, WRPO_PROMPTS, SAMPLES, WRPO_ROWS (quadruples trained on), WRPO_EPOCHS,
# EVAL_LIMIT; the defaults are the size docs/training.md reports (under 20 minutes on 2 idle cores).
set -euo pipefail
DATA=${1:-../shared/benchmarks}
STORE=${2:-.harness/gsm8k-cpu/store.sqlite}
OUT=.harness/gsm8k-cpu
EVAL="--benchmarks gsm8k --limit ${EVAL_LIMIT:-30} --max-tokens 384 --no-progress"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
harness train gsm8k-data --stage sft --offset 0 --rows "${SFT_ROWS:-64}" --out $OUT --data-dir "$DATA" --store "$STORE"
harness train sft --config trainers/recipes/gsm8k_sft_cpu.yaml --store "$STORE" --overwrite --no-progress \
  max_length="${SFT_MAX_LENGTH:-320}"
stamp "sft done"
# WRPO prompts come from other train rows than the SFT rows (offset 1000).
harness train gsm8k-data --stage wrpo --offset 1000 --rows "${WRPO_PROMPTS:-32}" --samples "${SAMPLES:-4}" \
  --max-tokens 256 --model smollm2-135m-gsm8k-sft --out $OUT --data-dir "$DATA" --store "$STORE" --no-progress
stamp "sampling done"
harness train wrpo --config trainers/recipes/gsm8k_wrpo_cpu.yaml --store "$STORE" --overwrite --no-progress \
  data_limit="${WRPO_ROWS:-16}" epochs="${WRPO_EPOCHS:-2}"
stamp "wrpo done"
for m in smollm2-135m-gsm8k-wrpo smollm2-135m-instruct smollm2-135m-gsm8k-sft; do
  harness run suite math --model $m $EVAL --data-dir "$DATA" --store "$STORE" --out $OUT/eval-$m
  stamp "eval $m done"
done
