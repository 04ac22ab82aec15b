"""Print the ablation table of docs/results.md from the tuning sweeps in experiments/results/ (seeds 100, 101)."""

import json
import sys

from leaky.training.sweep import read_records, summarise

FILES = ["experiments/results/tune_local_pendulum.jsonl", "experiments/results/tune_local_pendulum_2.jsonl",
         "experiments/results/tune_local_pendulum_3.jsonl", "experiments/results/tune_local_pendulum_4.jsonl",
         "experiments/results/tune_perturbation_pendulum.jsonl"]
DEFAULTS = {"family": "advantage", "clock": "causal", "view": "all", "baseline": "own", "data": "online"}


def describe(cfg):
    opts = dict(cfg.get("learner_options", {}))
    if cfg["learner"] == "perturbation":
        return "perturbation " + ", ".join(f"{k}={v}" for k, v in opts.items())
    parts = [f"{k}={opts.pop(k)}" for k in list(DEFAULTS) if k in opts and opts[k] != DEFAULTS[k]]
    return "local " + ", ".join(parts + [f"{k}={v}" for k, v in opts.items() if k not in DEFAULTS])


print("| variant | options (beyond advantage / causal / all / own / online) | env steps | final greedy return (mean ± std) | per seed |")
print("|---|---|---|---|---|")
for path in FILES:
    records = read_records(path)
    first = {r["variant"]: r for r in records}
    for name, s in summarise(records).items():
        cfg = first[name]["config"]
        per = ", ".join(f"{x:.0f}" for x in s["finals"])
        print(f"| {name} | {describe(cfg)} | {cfg['steps']:,} | {s['final_mean']:.0f} ± {s['final_std']:.0f} | {per} |")
