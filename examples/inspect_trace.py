"""Record a trace of a leaky network acting in Pendulum-v1, then read it back as NumPy arrays.

    python examples/inspect_trace.py                      # record demo.h5 in a temp dir, inspect it
    python examples/inspect_trace.py run.h5 --episode -1 --neurons 3,4,20

With a FILE (e.g. one written by ``leaky train --trace run.h5``, finished, crashed or still
running) it only reads. It prints what a researcher usually looks at first: how the episodes
went, the voltages of a few neurons over one episode, per-neuron critic values and TD errors,
and the training table. ``leaky inspect`` / ``leaky plot`` / ``leaky export --minari`` do the
same from the shell.
"""

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

import leaky
from leaky.trace import Trace, open_trace


def record_demo(path: Path, steps: int = 400, n_envs: int = 4, seed: int = 0) -> None:
    """Act with an untrained layered network and exploration noise; trace env 0 and env 2."""
    envs = gym.make_vec("Pendulum-v1", num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    net = leaky.Network.layered([3, 16, 1], backend="numpy", observation_space=envs.single_observation_space,
                                action_space=envs.single_action_space)
    rng = net.backend.rng(seed)
    obs, _ = envs.reset(seed=seed)
    V = net.reset(n_envs)
    with Trace(path, n_envs=n_envs, obs_dim=3, act_dim=1, n_neurons=net.n_neurons, delay=net.delay,
               config={"env": "Pendulum-v1", "network": net.config.to_dict()}, seeds={"env": seed},
               log_envs=(0, 2), voltages="all", observation_space=envs.single_observation_space,
               action_space=envs.single_action_space, env_id="Pendulum-v1", overwrite=True,
               training_fields=("mean_reward",)) as trace:
        for t in range(steps):
            xi = net.sample_noise(rng, n_envs, 0.1)
            V_end, action, cache = net.step(V, obs, xi)
            next_obs, reward, term, trunc, info = envs.step(leaky.to_numpy(action))
            final = next_obs.copy()                        # same-step autoreset: put final obs back
            for i in np.flatnonzero(term | trunc):
                final[i] = info["final_obs"][i]
            trace.log_step(obs, action, reward, term, trunc, next_obs=final, voltages=cache.V,
                           noise=xi[-1])                   # no critic here: q_local, td_error NaN
            if t % 50 == 0:
                trace.log_training(t * n_envs, mean_reward=float(np.mean(reward)))
            trace.log_weights(t * n_envs, net.K, net.b)
            V = np.where((term | trunc)[:, None], 0.0, V_end)
            obs = next_obs
    envs.close()


def _mean(x) -> float:
    """Mean of the finite values (NaN when nothing was logged, e.g. no critic in the demo)."""
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
            neurons = ([int(n) for n in args.neurons.split(",")] if args.neurons
                       else tr.neurons[[0, len(tr.neurons) // 2, -1]].tolist())
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
