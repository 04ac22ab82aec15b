"""Experiment 1 of the paper: how well does each neuron's local estimate point along BPTT's?

    python examples/align_gradients.py                     # Pendulum-v1, 5000 steps, a few minutes
    python examples/align_gradients.py --steps 20000 --png align.png

DDPG trains a layered [3, 64, 64, 1] network (ℓ = 3); the local estimators watch with their
actor steps switched off and, every --every DDPG updates, each one's row gradient is compared
with BPTT's on one replay minibatch: per neuron the correlation of its row (its incoming weights
and bias) with BPTT's row, per layer the cosine of the whole update, and for the per-neuron
critics the correlation of each neuron's slope ∂Q_n/∂α with the true ∂Q/∂α_n. The same as
``leaky align``; docs/align.md explains the figures and has them for 20k steps and three seeds.
"""

import argparse

from leaky.training.align import AlignConfig, align, format_summary, plot_alignment


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5000, help="env steps of DDPG's training")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--every", type=int, default=1000, help="DDPG updates between measurements")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--estimators", default="advantage,mlp,linear,perturb1,perturb8,perturb64,feedback,dfa")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", help="median and quartiles over neurons, by layer, over training")
    args = p.parse_args(argv)
    cfg = AlignConfig(env="Pendulum-v1", steps=args.steps, hidden=tuple(args.hidden), seed=args.seed,
                      every=args.every, learning_starts=args.learning_starts,
                      batch_size=args.batch_size, estimators=args.estimators)
    result = align(cfg)
    print(format_summary(result))
    if args.png:
        plot_alignment(result.table, result.groups, result.n_inputs, cfg.estimators, args.png)
        print(f"wrote {args.png}")
    # the headline: does a neuron's own estimate correlate with its BPTT row?
    summary = result.summary()
    if not len(result.table["step"]):
        print("\nno measurement yet: DDPG made fewer than --every updates")
        return
    best = max(summary, key=lambda e: summary[e]["all"]["row_corr"]["median"] or -2.0)
    print(f"\nbest-aligned estimator: {best} (median row correlation over every agent neuron "
          f"{summary[best]['all']['row_corr']['median']:+.3f})")


if __name__ == "__main__":
    main()
