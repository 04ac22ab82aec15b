"""The ``trace`` suite of ``leaky bench``: what logging a trace costs.

Two measurements (docs/trace-format.md reports and discusses them):

* **overhead** — the docs/design.md#3-every-neuron-is-an-agent prototype (Pendulum-v1 × 16 envs,
  ``layered([3, 32, 32, 1])``,
  ℓ = 3) steps untraced, and the arrays it produced are then logged into a :class:`leaky.Trace`
  at its defaults (env 0, default neurons, all four per-neuron fields, last voltages, lzf,
  flush every 1000 vector steps). Overhead = time inside ``log_step`` (flushes and close
  included) / time of the untraced step, against two steps: a whole training step of
  ``leaky.training.loop``'s ``perturbation`` learner (act, env step, observe, update; skipped if it
  cannot be built), and env + network alone (the smallest step: the largest fraction), where
  the codec and the flush cadence are also varied one at a time.
* **throughput** — the same steps logged with every env, neuron and internal step, once per
  codec (gzip-1, gzip-4, lzf, none, and with hdf5plugin zstd and blosc-zstd): uncompressed
  MB/s ingested by ``log_step`` up to a closed file, compression ratio (uncompressed / file
  size) and read-back MB/s.

Times are the minimum over repeats (the machine may be shared: interference only adds), and
each written file is opened and checked before its time is reported.
``bench_trace(args)`` returns the rows; ``print_table(rows)`` prints them;
``python -m leaky.bench.trace [--quick] [--json]`` runs the suite alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = [3, 32, 32, 1]          # the prototype of docs/design.md#3-every-neuron-is-an-agent
N_ENVS = 16
ENV_ID = "Pendulum-v1"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record_steps(n_steps: int, seed: int = 0, backend: str = "cpu", learner: str | None = None) -> dict:
    """Run the network on Pendulum and keep every array ``log_step`` would get.

    ``learner=None``: env step + ``Network.step`` only. ``learner="perturbation"`` (or another
    of ``leaky.training.loop``'s learners): a whole training step as ``leaky.training.loop`` takes it — act,
    env step, observe, update — built with ``leaky.training.loop``'s own helpers.

    Returns ``{"steps": [...], "step_seconds": (n_steps,), …}``: per step the keyword
    arguments of ``Trace.log_step`` and the wall time of the untraced step.
    """
    import gymnasium as gym

    from leaky import Network
    from leaky.trace import default_neurons

    envs = gym.make_vec(ENV_ID, num_envs=N_ENVS, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    if learner is None:
        net = Network.layered(SIZES, backend=backend, observation_space=envs.single_observation_space,
                              action_space=envs.single_action_space)
        agent = None
    else:
        from leaky.training.loop import TrainConfig, build_network, make_learner

        cfg = TrainConfig(env=ENV_ID, learner=learner, n_envs=N_ENVS, hidden=tuple(SIZES[1:-1]),
                          backend=backend, seed=seed, progress=False)
        net = build_network(cfg, envs.single_observation_space, envs.single_action_space)
        agent = make_learner(cfg, net)
    rng = np.random.default_rng(seed)
    N = net.n_neurons
    W = rng.standard_normal((N, N)).astype(np.float32) / np.sqrt(N)   # a linear critic's weights
    noise_rng = net.backend.rng(seed)
    obs, _ = envs.reset(seed=seed)
    V = net.reset(N_ENVS)
    net.step(V, obs, net.sample_noise(noise_rng, N_ENVS, 0.1))         # compile outside timing
    steps, seconds = [], np.zeros(n_steps)
    q_prev = None
    for t in range(-3 if agent is not None else 0, n_steps):             # agent: warm up first
        t0 = time.perf_counter()
        if agent is None:
            xi = net.sample_noise(noise_rng, N_ENVS, 0.1)
            V_new, action, cache = net.step(V, obs, xi)
            voltages = cache.V
        else:
            V_new, action = agent.act(V, obs, explore=True)
            current = getattr(agent, "_current", None)                   # cache and noise, if exposed
            voltages, xi = current if current is not None else (V_new, None)
            voltages = getattr(voltages, "V", voltages)
        action_np = np.asarray(action)
        next_obs, reward, term, trunc, info = envs.step(action_np)
        done = term | trunc
        final = next_obs
        if done.any():
            final = next_obs.copy()
            final[done] = np.stack(info["final_obs"][done])
        if agent is not None:
            agent.observe(obs, action, reward, final, term, trunc, V, V_new)
            agent.update()
        V = np.where(done[:, None], 0.0, np.asarray(V_new)) if agent is None else V_new
        if agent is not None and done.any():
            V = V.copy()
            V[net.backend.asarray(done, dtype=bool)] = 0.0
        if t < 0:
            obs = next_obs
            continue
        seconds[t] = time.perf_counter() - t0
        V_last = np.asarray(voltages)[-1] if np.ndim(voltages) == 3 else np.asarray(voltages)
        q = V_last.astype(np.float32) @ W.T
        td = (reward[:, None] + 0.99 * q - (q if q_prev is None else q_prev)).astype(np.float32)
        q_prev = q
        noise = np.asarray(xi[-1]) if xi is not None else rng.standard_normal((N_ENVS, N)) * 0.1
        steps.append(dict(obs=obs, actions=action_np, rewards=reward, terminations=term,
                          truncations=trunc, next_obs=final, voltages=np.asarray(voltages),
                          q_local=q, td_error=td, noise=noise))
        obs = next_obs
    envs.close()
    return {"steps": steps, "step_seconds": seconds, "n_neurons": N, "delay": net.delay,
            "neurons_logged": len(default_neurons(N, SIZES[0], SIZES[-1])),
            "step": "env + network" if learner is None else f"training step ({learner})"}


def _replay(path, rec, **options) -> tuple[float, float]:
    """Log every recorded step into a new trace (created, written, closed); returns the wall
    seconds and the CPU seconds of this thread spent inside the trace (creation excluded)."""
    from leaky.trace import Trace

    tr = Trace(path, n_envs=N_ENVS, obs_dim=SIZES[0], act_dim=SIZES[-1], n_neurons=rec["n_neurons"],
               delay=rec["delay"], config={"bench": "trace"}, seeds={"bench": 0}, overwrite=True,
               **options)
    log_step = tr.log_step
    c0, t0 = time.thread_time(), time.perf_counter()
    for kw in rec["steps"]:
        log_step(**kw)
    tr.close()
    return time.perf_counter() - t0, time.thread_time() - c0


def _check(path, n_steps: int, n_envs_logged: int) -> None:
    """A benchmark checks its result before it reports a time."""
    from leaky.trace import open_trace

    with open_trace(path) as tr:
        if tr.n_steps != n_steps or tr.n_rows != n_steps * n_envs_logged or tr.status != "closed":
            raise RuntimeError(f"bench trace: wrote {tr.n_steps} steps / {tr.n_rows} rows "
                               f"({tr.status}), expected {n_steps} / {n_steps * n_envs_logged}")


def overhead_rows(rec, tmp: Path, repeats: int, all_cases: bool = True) -> list[dict]:
    """The default trace, and (``all_cases``) its codec and flush cadence varied one at a time."""
    from leaky.trace import DEFAULT_COMPRESSION, DEFAULT_FLUSH_EVERY

    n = len(rec["steps"])
    step_s = rec["step_seconds"]                             # untraced env + network step
    cases = [(DEFAULT_COMPRESSION, DEFAULT_FLUSH_EVERY)]
    if all_cases:
        cases += [(DEFAULT_COMPRESSION, 100), (DEFAULT_COMPRESSION, 10_000)]
    for codec in ("gzip-1", "gzip", "lzf", "zstd", "none") if all_cases else ():
        if codec != DEFAULT_COMPRESSION and (codec, DEFAULT_FLUSH_EVERY) not in cases:
            cases.append((codec, DEFAULT_FLUSH_EVERY))
    rows = []
    for codec, flush_every in cases:
        try:
            from leaky.trace import compression_options
            compression_options(codec)
        except Exception:                                    # noqa: BLE001 - no hdf5plugin
            continue
        walls, cpus = [], []
        for r in range(repeats):
            path = tmp / f"overhead_{codec}_{flush_every}_{r}.h5"
            wall, cpu = _replay(path, rec, flush_every=flush_every, compression=codec)
            _check(path, n, 1)
            walls.append(wall / n)
            cpus.append(cpu / n)
        log_s = min(walls)          # min over repeats: the machine is shared, interference only adds
        rows.append({"suite": "trace", "case": "overhead", "codec": codec,
                     "flush_every": flush_every,
                     "default": (codec, flush_every) == (DEFAULT_COMPRESSION, DEFAULT_FLUSH_EVERY),
                     "envs_logged": 1, "n_envs": N_ENVS, "n_neurons": rec["n_neurons"],
                     "neurons_logged": rec["neurons_logged"], "steps": n,
                     "step_us": step_s * 1e6, "log_us": log_s * 1e6, "log_cpu_us": min(cpus) * 1e6,
                     "overhead": log_s / step_s, "target": 0.05,
                     "file_MB": os.path.getsize(path) / 1e6,
                     "bytes_per_step": os.path.getsize(path) / n})
    return rows


def throughput_rows(rec, tmp: Path, repeats: int) -> list[dict]:
    from leaky.trace import open_trace

    codecs = ["gzip-1", "gzip-4", "lzf", "none"]
    try:
        import hdf5plugin  # noqa: F401
        codecs += ["zstd", "blosc-zstd"]
    except ImportError:
        pass
    n = len(rec["steps"])
    rows = []
    for codec in codecs:
        times, cpus = [], []
        for r in range(repeats):
            path = tmp / f"codec_{codec}_{r}.h5"
            wall, cpu = _replay(path, rec, compression=codec, log_envs="all", log_neurons="all",
                                voltages="all")
            _check(path, n, N_ENVS)
            times.append(wall)
            cpus.append(cpu)
        with open_trace(path) as tr:
            infos = tr.datasets()
            raw = sum(d.raw_bytes for d in infos if d.name.startswith("steps/"))
            stored = sum(d.stored_bytes for d in infos if d.name.startswith("steps/"))
            t0 = time.perf_counter()
            for name in ("observations", "actions", "rewards", "voltages", "q_local", "td_error", "noise"):
                tr.steps(name)
            read_s = time.perf_counter() - t0
        size = os.path.getsize(path)
        rows.append({"suite": "trace", "case": "throughput", "codec": codec, "steps": n,
                     "rows": n * N_ENVS, "raw_MB": raw / 1e6, "file_MB": size / 1e6,
                     "ratio": raw / size, "chunk_ratio": raw / stored if stored else None,
                     "write_MB_s": raw / 1e6 / min(times),
                     "write_cpu_MB_s": raw / 1e6 / min(cpus),
                     "read_MB_s": raw / 1e6 / read_s,
                     "log_us_per_row": min(times) / (n * N_ENVS) * 1e6})
    return rows


def _step_time(n_steps: int, backend: str, learner, repeats: int) -> tuple[dict, float]:
    """Record once, and time the untraced step: mean over a run, min over ``repeats`` runs
    (the machine may be shared; interference only ever adds time)."""
    rec = record_steps(n_steps, backend=backend, learner=learner)
    times = [float(np.mean(rec["step_seconds"]))]
    for _ in range(repeats - 1):
        times.append(float(np.mean(record_steps(n_steps, backend=backend, learner=learner)["step_seconds"])))
    return rec, min(times)


def bench_trace(args=None) -> list[dict]:
    """Run the trace suite; ``args.quick`` (optional) shortens it. Returns one dict per row.

    Overhead is measured against two untraced steps: a whole training step of
    ``leaky.training.loop``'s ``perturbation`` learner (skipped if it cannot be built), and env +
    network alone (no learning: the smallest step, so the largest fraction).
    """
    quick = bool(getattr(args, "quick", False))
    n_steps = int(getattr(args, "trace_steps", 0) or (600 if quick else 4000))
    repeats = 1 if quick else 3
    backend = getattr(args, "trace_backend", None) or "cpu"
    machine = {"backend": backend, "cpu": _cpu_model(), "cores": os.cpu_count(),
               "python": platform.python_version()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="leaky-bench-trace-") as d:
        rec = None
        for learner in ("perturbation", None):
            try:
                r, step_s = _step_time(n_steps, backend, learner, repeats)
            except Exception as e:                      # noqa: BLE001 - another module's learner
                rows.append({"suite": "trace", "case": "overhead", "step": f"training step ({learner})",
                             "skipped": f"{type(e).__name__}: {e}"[:200]})
                continue
            r["step_seconds"] = step_s
            rec = rec or r
            for row in overhead_rows(r, Path(d), repeats, all_cases=learner is None):
                row["step"] = r["step"]
                rows.append(row)
        rec_short = dict(rec, steps=rec["steps"][: max(200, n_steps // 2)])
        rows += throughput_rows(rec_short, Path(d), repeats)
    for r in rows:
        r.update(machine)
    return rows


def print_table(rows, file=None) -> None:
    """Print the suite's rows as two small tables."""
    file = file or sys.stdout
    over = [r for r in rows if r["case"] == "overhead"]
    thr = [r for r in rows if r["case"] == "throughput"]
    timed = [r for r in over if "skipped" not in r]
    if timed:
        r0 = timed[0]
        print(f"trace overhead: {ENV_ID} × {r0['n_envs']} envs, layered {SIZES} (N = "
              f"{r0['n_neurons']}, {r0['neurons_logged']} logged), {r0['backend']} backend, "
              f"logging env 0; {r0['cpu']}, {r0['cores']} cores", file=file)
        print(f"  {'untraced step':<30s} {'codec':<7s} {'flush':>6s} {'step µs':>8s} {'log µs':>7s} "
              f"{'(cpu)':>6s} {'overhead':>9s} {'B/step':>7s}", file=file)
    for r in over:
        if "skipped" in r:
            print(f"  {r['step']:<30s} skipped: {r['skipped']}", file=file)
            continue
        mark = "  default" if r["default"] else ""
        ok = "" if r["overhead"] < r["target"] else "  above 5% target"
        print(f"  {r['step']:<30s} {r['codec']:<7s} {r['flush_every']:>6d} {r['step_us']:>8.1f} "
              f"{r['log_us']:>7.2f} {r['log_cpu_us']:>6.2f} {100 * r['overhead']:>8.2f}% "
              f"{r['bytes_per_step']:>7.0f}{mark}{ok}", file=file)
    if thr:
        r0 = thr[0]
        print(f"trace write throughput: every env, neuron and internal step ({r0['rows']} rows, "
              f"{r0['raw_MB']:.1f} MB uncompressed)", file=file)
        print(f"  {'codec':<11s} {'write MB/s':>10s} {'(cpu)':>7s} {'read MB/s':>10s} {'ratio':>6s} "
              f"{'file MB':>8s} {'µs/row':>7s}", file=file)
        for r in thr:
            print(f"  {r['codec']:<11s} {r['write_MB_s']:>10.1f} {r['write_cpu_MB_s']:>7.1f} "
                  f"{r['read_MB_s']:>10.1f} {r['ratio']:>6.2f} {r['file_MB']:>8.2f} "
                  f"{r['log_us_per_row']:>7.2f}", file=file)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of this suite, for the ``leaky bench`` parser."""
    parser.add_argument("--trace-steps", type=int, default=0,
                        help="vector steps recorded for the trace suite (default 4000, quick 600)")
    parser.add_argument("--trace-backend", default="cpu", choices=("numpy", "cpu", "cuda"),
                        help="backend of the network in the traced loop (default cpu)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m leaky.bench.trace", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    add_arguments(p)
    args = p.parse_args(argv)
    rows = bench_trace(args)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
