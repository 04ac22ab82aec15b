"""Memory: Pendulum-v1 with the angular velocity hidden, where leak and recurrence matter.

    python examples/memory.py                      # 4 runs of 20k steps, about 10-20 minutes on 2 cores
    python examples/memory.py --steps 50000 --seed 1 --neurons 64 --leak 0.5

``leaky/PendulumNoVelocity-v1`` observes only [cos θ, sin θ]: from one observation a policy
cannot tell which way the pendulum swings, so it cannot pump energy in at the right moment. A
dense leaky network (every neuron reads every neuron ℓ steps back, V ← (1 − λ)V + λ·f(…)) keeps
past angles in its state and can recover the velocity from them; a layered feed-forward
network ([2, 64, 64, 1], no leak) sees one observation, delayed by its pipeline. Both are
trained by DDPG (BPTT through the recurrence) and by the backprop-free learner (its defaults:
every neuron scores its activity with the shared critic's broadcast through learned feedback
weights), for the same number of steps, and the greedy returns are compared. docs/results.md
("Memory") has the figures over three seeds.
"""

import argparse

from leaky.learners.ddpg import RESULTS_OPTIONS
from leaky.training.loop import TrainConfig, train

ENV = "leaky/PendulumNoVelocity-v1"


def configs(steps: int, seed: int, neurons: int, delay: int, leak: float) -> dict[str, TrainConfig]:
    """The four runs: (DDPG, local) × (dense leaky, feed-forward), the same budget and seed."""
    dense = dict(topology="dense", neurons=neurons, delay=delay, leak=leak)
    feed_forward = dict(topology="layered", hidden=(64, 64))
    out = {}
    for net, shape in (("dense leaky", dense), ("feed-forward", feed_forward)):
        for learner, opts in (("ddpg", dict(RESULTS_OPTIONS)), ("local", {})):
            out[f"{learner}, {net}"] = TrainConfig(
                env=ENV, learner=learner, steps=steps, n_envs=8, seed=seed, learner_options=opts,
                eval_every=max(1, steps // 4), eval_episodes=10, **shape)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20_000, help="env steps per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neurons", type=int, default=64, help="N of the dense leaky network")
    p.add_argument("--delay", type=int, default=2, help="its evaluation delay ℓ")
    p.add_argument("--leak", type=float, default=0.5, help="its leak λ (1: no memory in V)")
    args = p.parse_args(argv)
    results = {}
    for name, cfg in configs(args.steps, args.seed, args.neurons, args.delay, args.leak).items():
        print(f"training {name} for {args.steps} env steps …", flush=True)
        results[name] = r = train(cfg)
        print(f"  {r.summary()}", flush=True)
    print(f"\ngreedy return on {ENV} (velocity hidden; random ≈ -1200, the full Pendulum solved ≈ -150):")
    for name, r in results.items():
        curve = " → ".join(f"{e['mean']:.0f}" for e in r.evaluations)
        print(f"  {name:22s} {curve}")
    for learner in ("ddpg", "local"):
        dense, ff = results[f"{learner}, dense leaky"].final_eval, results[f"{learner}, feed-forward"].final_eval
        print(f"{learner}: the dense leaky network ends at {dense:.0f}, the feed-forward one at {ff:.0f} "
              f"({'memory helps' if dense > ff else 'memory does not help here'})")
    return results


if __name__ == "__main__":
    main()
