"""A sweep: DDPG against the backprop-free learner on Pendulum-v1, over seeds, in parallel.

    python examples/sweep.py                        # 2 learners × 3 seeds × 10k steps, a process pool
    python examples/sweep.py --ray --workers 2      # the same tasks on a local Ray (pip install -e ".[ray]")
    python examples/sweep.py --ray --address auto   # on the Ray cluster this machine belongs to

Each (learner, seed) is one task, a whole training run; each finished task appends one JSON
line to --out, so running the command again with --resume skips what is done. At the end it
prints the final greedy returns over seeds and writes the learning curves as a PNG. The same
as ``leaky sweep SPEC --out OUT [--ray]`` with the spec built here; docs/sweeps.md.
"""

import argparse

from leaky.learners.ddpg import RESULTS_OPTIONS
from leaky.training.sweep import report, run_sweep


def spec(steps: int, seeds: list[int]) -> dict:
    return {"env": "Pendulum-v1", "steps": steps, "seeds": seeds,
            "common": {"n_envs": 8, "hidden": [64, 64], "eval_every": max(1, steps // 5), "eval_episodes": 5},
            "variants": {"ddpg": {"learner": "ddpg", "learner_options": dict(RESULTS_OPTIONS)},
                         "local": {"learner": "local"}}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10_000, help="env steps per task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="sweep.jsonl", help="JSON-lines results file (appended)")
    p.add_argument("--png", default="sweep.png", help="learning curves, mean and min–max over seeds")
    p.add_argument("--workers", type=int, default=2, help="processes (or, with --ray, CPUs of a local Ray)")
    p.add_argument("--ray", action="store_true", help="run the tasks on Ray")
    p.add_argument("--address", help="with --ray: a running cluster's head, HOST:PORT or auto")
    p.add_argument("--resume", action="store_true", help="skip the tasks --out holds already")
    args = p.parse_args(argv)
    records = run_sweep(spec(args.steps, args.seeds), args.out, workers=args.workers, use_ray=args.ray,
                        address=args.address, resume=args.resume)
    print(f"{len(records)} tasks ran; results in {args.out}, curves in {args.png}\n")
    print(report(args.out, png=args.png, title="Pendulum-v1: DDPG against the backprop-free learner"))
    return records


if __name__ == "__main__":
    main()
