"""Numbers a fresh process computes with the cpu kernels, for tests/kernels/test_cache.py.

    python -m tests.kernels.cache_probe OUT.npz serial     # the serial step schedule, then a short run
    python -m tests.kernels.cache_probe OUT.npz all        # every schedule (serial first), then the run

Run twice with one ``NUMBA_CACHE_DIR``: the first process compiles and fills the cache, the
second loads what the first wrote (and compiles what it lacks, here the parallel schedules,
which call the same helper kernels). The test compares the two files bit for bit.
"""

import sys

import numpy as np


def step_outputs(schedules) -> dict:
    """The fused step of a 300-neuron dense network with divisive inhibition, 13 rows: dot
    tiles, left-over rows and the inhibition sum, under each schedule named."""
    from leaky.kernels import step as step_kernels
    from leaky.model.network import Network
    from tests.kernels.step_cases import random_step_case

    B, N = 13, 300
    cfg, V0, obs, xi = random_step_case(np.random.default_rng(B), B, N, 2, 1, 3, inhibition="divisive")
    net = Network(cfg, backend="cpu")
    f32 = np.float32
    out = {}
    for schedule in schedules:
        arrays = step_kernels.StepOut(*(np.full(s, np.nan, f32)
                                        for s in [(cfg.delay + 1, B, N)] + [(cfg.delay, B, N)] * 3))
        step_kernels.step_cpu(V0.astype(f32), obs.astype(f32), xi.astype(f32),
                              step_kernels.StepNet(net.K, net.b, net.leak, net.col_lo, net.col_hi),
                              step_kernels.StepFlags(2, 0, 1, cfg.kappa, False), arrays, schedule=schedule)
        for name, a in zip(("V", "z", "y", "alpha"), arrays):
            out[f"step_{schedule}_{name}"] = a
    return out


def run_outputs(rule: str) -> dict:
    """A short local-learner run on Pendulum-v1: the fused step and the learner's kernels
    (``critic``: the fused local update; ``feedback``: the tangent step and the credit update),
    acting and learning."""
    from leaky.core.backend import to_numpy
    from leaky.training.loop import TrainConfig, build_network, make_envs, make_learner

    options = {"rule": rule} if rule == "critic" else {"rule": rule, "learning_starts": 16, "batch_size": 16}
    cfg = TrainConfig(learner="local", steps=64, n_envs=4, hidden=(16,), progress=False, learner_options=options)
    envs = make_envs(cfg.env, cfg.n_envs)
    net = build_network(cfg, envs.single_observation_space, envs.single_action_space)
    learner = make_learner(cfg, net)
    obs, _ = envs.reset(seed=0)
    V = net.reset(cfg.n_envs)
    actions = []
    for _ in range(cfg.steps // cfg.n_envs):
        V_end, action = learner.act(V, obs, explore=True)
        next_obs, reward, term, trunc, _ = envs.step(to_numpy(action))
        learner.observe(obs, action, reward, next_obs, term, trunc, V, V_end)
        learner.update()
        actions.append(to_numpy(action))
        V, obs = V_end, next_obs
    envs.close()
    state = to_numpy(learner.theta) if rule == "critic" else to_numpy(learner.F)
    return {f"run_{rule}_actions": np.stack(actions), f"run_{rule}_K": to_numpy(net.K),
            f"run_{rule}_b": to_numpy(net.b), f"run_{rule}_state": state}


if __name__ == "__main__":
    path, which = sys.argv[1], sys.argv[2]
    schedules = ("serial",) if which == "serial" else ("serial", "rows", "neurons")
    np.savez(path, **step_outputs(schedules), **run_outputs("critic"), **run_outputs("feedback"))
