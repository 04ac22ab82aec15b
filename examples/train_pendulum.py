"""The main job: train the same network on Pendulum-v1 with backprop (DDPG) and without (local).

    python examples/train_pendulum.py            # about 1-3 minutes on 2 CPU cores
    python examples/train_pendulum.py --steps 30000 --seed 1 --backend cpu

Both learners train a layered [3, 64, 64, 1] network (ℓ = 3 internal steps per action) for the
same number of environment steps and report the greedy return (mean over 5 evaluation
episodes with seeds kept apart from training) before and after. Pendulum-v1: a random policy
scores about -1200 to -1500, a good one about -150. The local learner runs its defaults: every
neuron scores its own activity with the shared critic's broadcast ∂Q/∂a through its learned
feedback weights (rule ``feedback``, docs/credit.md); docs/results.md has what both reach over
seeds never tuned on.
"""

import argparse

from leaky.learners.ddpg import RESULTS_OPTIONS
from leaky.training.loop import TrainConfig, train  # holds BLAS to one thread: leaky/core/threads.py

DDPG = dict(RESULTS_OPTIONS)   # docs/results.md's DDPG: critic 128-128, 4 updates per step
LOCAL = {}   # the local learner's defaults: rule feedback


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20_000, help="env steps per learner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "auto", "numpy"])
    p.add_argument("--learners", nargs="*", default=["ddpg", "local"], choices=["ddpg", "local", "perturbation"])
    args = p.parse_args(argv)
    results = {}
    for learner in args.learners:
        opts = {"ddpg": DDPG, "local": LOCAL}.get(learner, {})
        cfg = TrainConfig(env="Pendulum-v1", learner=learner, steps=args.steps, n_envs=8, seed=args.seed,
                          backend=args.backend, hidden=(64, 64), learner_options=opts,
                          eval_every=max(1, args.steps // 4), eval_episodes=5)
        print(f"training {learner} for {args.steps} env steps …", flush=True)
        results[learner] = r = train(cfg)
        print(f"  {learner}: {r.summary()}", flush=True)
    print("\nwhat was learned (greedy return, Pendulum-v1; random ≈ -1200 … -1500, solved ≈ -150):")
    for learner, r in results.items():
        curve = " → ".join(f"{e['mean']:.0f}" for e in r.evaluations)
        print(f"  {learner:13s} {curve}")
    if {"ddpg", "local"} <= set(results):
        ddpg, local = results["ddpg"].final_eval, results["local"].final_eval
        gap = (local - ddpg) / abs(ddpg)
        print(f"\nthe backprop-free learner's final return is {abs(gap):.0%} {'below' if gap < 0 else 'above'} "
              f"DDPG's ({local:.0f} against {ddpg:.0f})")
    return results


if __name__ == "__main__":
    main()
