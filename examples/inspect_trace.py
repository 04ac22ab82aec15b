"""Record a trace of a leaky network learning in Pendulum-v1, then read it back as NumPy arrays.

    python examples/inspect_trace.py                      # record demo.h5 in a temp dir, inspect it
    python examples/inspect_trace.py run.h5 --episode -1 --neurons 3,4,20

With a FILE (e.g. one written by ``leaky train --trace run.h5``, finished, crashed or still
running) it only reads. It prints what a researcher usually looks at first: how the episodes
went, the voltages of a few neurons over one episode, their critic values and TD errors, and
the training table. ``leaky inspect`` / ``leaky plot`` / ``leaky export --minari`` do the same
from the shell.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from leaky.trace import open_trace
from leaky.training.loop import TrainConfig, train


def record_demo(path: Path, steps: int = 800, n_envs: int = 4, seed: int = 0) -> None:
    """Train the local learner briefly (one 200-step episode per env, learning from the 200th
    stored transition) with a trace of env 0 and env 2: every neuron's voltages at every internal
    step, and the critic value and TD error each neuron learns from (the record each learner
    hands the loop, docs/trace-format.md; under the default rule every neuron shares the one
    critic's Q(s, a) and TD error, under ``rule=critic`` each has its own)."""
    train(TrainConfig(env="Pendulum-v1", learner="local", steps=steps, n_envs=n_envs, seed=seed,
                      hidden=(16,), eval_every=steps, eval_episodes=1, progress=False,
                      learner_options={"learning_starts": 200, "batch_size": 64},
                      trace=str(path), trace_options={"log_envs": (0, 2), "voltages": "all"}))


def _mean(x) -> float:
    """Mean of the finite values (NaN when nothing was logged, e.g. a sensor's critic value)."""
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", nargs="?", help="a trace to read (default: record a demo one first)")
    p.add_argument("--episode", type=int, default=-1, help="finished episode to look at (-1: last)")
    p.add_argument("--neurons", default=None, help="comma-separated neuron indices (default: 3 logged ones)")
    args = p.parse_args(argv)

    if args.file is None:
        path = Path(tempfile.mkdtemp(prefix="leaky-demo-")) / "demo.h5"
        record_demo(path)
    else:
        path = Path(args.file)

    with open_trace(path) as tr:                      # live and crashed files open too
        print(tr)
        idx = tr.episodes()
        print(f"{len(idx)} finished episodes of envs {tr.envs.tolist()}; returns: "
              f"{np.array2string(idx.returns[:8], precision=1)}{' …' if len(idx) > 8 else ''}")
        if len(idx) and tr.has_neurons:
            if args.neurons:
                neurons = [int(n) for n in args.neurons.split(",")]
            else:                                     # three agents: sensors have no critic
                obs_dim = tr.episode(args.episode, neurons=[]).observations.shape[1]
                agents = tr.neurons[tr.neurons >= obs_dim]
                neurons = agents[[0, len(agents) // 2, -1]].tolist()
            ep = tr.episode(args.episode, neurons=neurons)
            print(f"episode {ep.index} (env {ep.env}): {ep.length} steps, return {ep.total_return:.1f}; "
                  f"observations {ep.observations.shape} (T+1), actions {ep.actions.shape}")
            V = ep.voltages[:, -1]                          # (T, neurons): after the last internal step
            for k, n in enumerate(ep.neurons):
                print(f"  neuron {n:3d}: voltage mean {_mean(V[:, k]):+.3f}, std {np.std(V[:, k]):.3f}; "
                      f"critic value {_mean(ep.q_local[:, k]):+.3f}, "
                      f"|TD error| {_mean(np.abs(ep.td_error[:, k])):.3f}")
        table = tr.training()
        print(f"training table: {len(table['step'])} rows, columns {sorted(table)}")
        if tr.n_weights:
            step, K, b = tr.weights(-1)
            print(f"last weight snapshot at step {step}: |K| = {np.linalg.norm(K):.3f}")
    print(f"trace file: {path}")
    return path


if __name__ == "__main__":
    main()
