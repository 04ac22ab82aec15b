"""``leaky bench train`` and ``leaky bench solve``: the whole training loop's env steps/s split
into phases, and the wall time to a first good greedy return."""

from __future__ import annotations


import numpy as np

from leaky.core.backend import gpu_available
from leaky.bench.timing import Row, _row


# ---------------------------------------------------------------------------------------------
# train: the whole training loop, its time split into phases
# ---------------------------------------------------------------------------------------------

LOOP_CASES = [   # (learner, backend, options, trace)
    ("local", "cpu", {"rule": "critic"}, False),
    ("local", "cpu", {"rule": "critic"}, True),
    ("ddpg", "cpu", {"learning_starts": 256}, False),   # updates from the 33rd iteration on
    ("local", "cuda", {"rule": "critic"}, False),
    ("local", "cuda", {"rule": "critic", "graph": True}, False),
]


def bench_loop(steps: int = 8000, n_envs: int = 8, hidden=(64, 64), cases=None) -> list[Row]:
    """Env steps/s of ``leaky.training.loop`` on Pendulum-v1 (layered [3, *hidden, 1], ℓ = layers), with
    the wall time split into env, act, learn, logging and the rest (``TrainResult.timing``).

    Each case first runs ``4·n_envs`` steps untimed (compilation, caches), then ``steps`` steps;
    evaluation (one greedy episode at the end) is excluded from the rate. The local learner
    updates at every step (online); DDPG (critic 400-300, batch 256) from its 256th transition
    on. GPU cases run only with a GPU. The loop is made of the kernels the ``step`` and
    ``update`` suites check.
    """
    import tempfile

    from leaky.training.loop import TrainConfig, train

    rows = []
    for learner, backend, options, trace in LOOP_CASES if cases is None else cases:
        if backend == "cuda" and not gpu_available():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            def run(n):
                return train(TrainConfig(env="Pendulum-v1", learner=learner, backend=backend, steps=n,
                                         n_envs=n_envs, hidden=tuple(hidden), eval_every=n, eval_episodes=1,
                                         learner_options=dict(options), progress=False,
                                         trace=f"{tmp}/trace-{n}.h5" if trace else None))
            run(4 * n_envs)
            r = run(steps)
        busy = r.wall_seconds - r.timing["evaluation"] - r.timing["checkpoint"]
        if not (np.isfinite(r.final_eval) and busy > 0):
            raise AssertionError(f"bench train {learner}/{backend}: the run did not finish cleanly")
        iterations = r.env_steps // n_envs
        split = {k: v / busy for k, v in r.timing.items() if k not in ("evaluation", "checkpoint")}
        what = learner + (" graph" if options.get("graph") else "") + (" + trace" if trace else "")
        note = " · ".join(f"{k} {v:.0%}" for k, v in split.items())
        N = 3 + sum(hidden) + 1
        rows.append(_row("train", f"loop {what}", backend, n_envs, N, len(hidden) + 1, busy / iterations,
                         0.0, 0.0, note=note, samples_per_s=r.env_steps / busy, split=split))
    base = {r.backend: r.seconds for r in rows if r.kernel == "loop local"}
    for r in rows:
        r.vs_baseline = base.get(r.backend, r.seconds) / r.seconds
    return rows


# ---------------------------------------------------------------------------------------------
# solve: wall time to the first good greedy return
# ---------------------------------------------------------------------------------------------

SOLVE_TARGET = -200.0      # Pendulum-v1 greedy return counted as solved


def bench_solve(seeds=(0, 1, 2), max_steps: int = 30_000, eval_every: int = 1000,
                target: float = SOLVE_TARGET) -> list[Row]:
    """Wall time from the start of ``leaky.training.loop`` to the first greedy evaluation (5 episodes) at
    or above ``target`` on Pendulum-v1, for DDPG and the default local learner, on the main job's
    network (layered [3, 64, 64, 1], 8 envs, cpu backend). The time includes the evaluations
    (about 5 % here) and JIT compilation on a cold cache; rows give the env steps too. A run
    that never reaches the target reports its whole wall time and says so. The row's ``N`` column
    holds the env steps run, ``B`` the environments."""
    from leaky.learners.ddpg import RESULTS_OPTIONS
    from leaky.training.loop import TrainConfig, train

    rows = []
    for learner, options in (("ddpg", dict(RESULTS_OPTIONS)), ("local", {})):
        for seed in seeds:
            r = train(TrainConfig(env="Pendulum-v1", learner=learner, steps=max_steps, n_envs=8, seed=seed,
                                  hidden=(64, 64), learner_options=options, eval_every=eval_every,
                                  eval_episodes=5, progress=False, target_return=target))
            hit = next((i for i, e in enumerate(r.evaluations) if e["mean"] >= target), None)
            t = r.eval_wall[hit] if hit is not None else r.wall_seconds
            note = (f"seed {seed}: {r.evaluations[hit]['mean']:.0f} ≥ {target:.0f} after "
                    f"{r.evaluations[hit]['step']} env steps" if hit is not None else
                    f"seed {seed}: not reached in {r.env_steps} env steps (best "
                    f"{max(e['mean'] for e in r.evaluations):.0f})")
            rows.append(_row("solve", learner, "cpu", 8, r.env_steps, 3, t, 0.0, 0.0, note=note))
    return rows
