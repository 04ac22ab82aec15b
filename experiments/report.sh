#!/usr/bin/env bash
# Regenerate the tables and figures of docs/results.md from the sweep results in experiments/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m leaky sweep --report experiments/results/pendulum.jsonl --png docs/figures/pendulum.png \
  --title "Pendulum-v1: greedy return, 3 seeds, layered [3, 64, 64, 1]"
python -m leaky sweep --report experiments/results/inverted_pendulum.jsonl --png docs/figures/inverted_pendulum.png \
  --title "InvertedPendulum-v5: greedy return, 3 seeds, layered [4, 64, 64, 1]"
python experiments/ablation_table.py
for name in tune_local_pendulum tune_local_pendulum_2 tune_local_pendulum_3 tune_local_pendulum_4 tune_perturbation_pendulum; do
  echo "## $name"; python -m leaky sweep --report experiments/results/$name.jsonl
done
for name in pendulum_long inverted_pendulum_long; do
  echo "## $name"; python -m leaky sweep --report experiments/results/$name.jsonl
done
