"""The default rule of ``leaky train --learner local``, chosen on the tuning seeds only.

    python experiments/credit/choose.py experiments/results/credit/tune50_pendulum.jsonl \
        experiments/results/credit/tune50_inverted_pendulum.jsonl

The rule, fixed before the evaluation seeds were run: per task, each variant's final greedy
return R on the tuning seeds (100-101, 50k steps) is normalised as
``(R - R_random) / (R_ddpg - R_random)``, per seed, with ``R_random`` the mean return of a
uniformly random policy (measured here, 100 seeded episodes) and ``R_ddpg`` DDPG's mean final
return on the same seeds; the score is the mean over tasks and seeds. The highest score wins;
scores within 0.02 of the best count as a tie, won by the variant with fewer tangents per sample.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from leaky.training.table import random_return

TIE = 0.02


def load(path):
    by = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "error" not in r:
                by.setdefault(r["variant"], {})[r["seed"]] = r
    return by


def tangents(record) -> int:
    opts = record["config"].get("learner_options") or {}
    if record["config"]["learner"] != "local":
        return 0
    return int(opts.get("tangents", 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="leaky sweep result files, one per task")
    args = p.parse_args(argv)
    scores, cost = {}, {}
    for path in args.results:
        by = load(path)
        env_id = next(iter(next(iter(by.values())).values()))["config"]["env"]
        rand = random_return(env_id)
        ddpg = np.mean([r["final"] for r in by["ddpg"].values()])
        print(f"{env_id}: random {rand:.1f}, ddpg {ddpg:.1f} (seeds {sorted(by['ddpg'])})")
        for name, seeds in by.items():
            s = [(r["final"] - rand) / (ddpg - rand) for r in seeds.values()]
            finals = ", ".join(f"{r['final']:.1f}" for _, r in sorted(seeds.items()))
            print(f"  {name:12s} finals {finals:24s} normalised {np.mean(s):.3f}")
            scores.setdefault(name, []).extend(s)
            cost[name] = tangents(next(iter(seeds.values())))
    n_tasks = len(args.results)
    ranked = sorted(((float(np.mean(v)), k) for k, v in scores.items() if k != "ddpg"
                     and len(v) == len(scores["ddpg"])), reverse=True)
    print("\nscore (mean over tasks and seeds, DDPG = 1):")
    for s, k in ranked:
        print(f"  {k:12s} {s:.3f}  tangents {cost[k]}")
    best = ranked[0][0]
    tied = [k for s, k in ranked if best - s <= TIE]
    choice = min(tied, key=lambda k: (cost[k], -np.mean(scores[k])))
    print(f"\nchosen over {n_tasks} tasks: {choice} (tied within {TIE}: {', '.join(tied)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
