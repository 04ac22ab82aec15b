"""``leaky sweep``: run a grid of (variant, seed) training runs and summarise them.

A spec is a JSON file::

    {"env": "Pendulum-v1", "steps": 100000, "seeds": [0, 1, 2],
     "common": {"n_envs": 8, "hidden": [32, 32], "eval_every": 10000},
     "variants": {"ddpg": {"learner": "ddpg"},
                  "literal": {"learner": "local", "learner_options": {"family": "linear"}}}}

Every (variant, seed) is one task: a :class:`leaky.training.loop.TrainConfig` made of ``common``, the
variant's fields, ``env``, ``steps`` and the seed. Tasks run in a process pool on this machine
(``--workers``), or on Ray with ``--ray`` (``pip install leaky[ray]``; a local Ray, or a
cluster with ``--address``; docs/sweeps.md). ``--trace-dir`` gives every task a trace. Each finished
task appends one JSON line to the output file, so an interrupted sweep keeps what it finished
and ``--resume`` skips those tasks (``--resume --retry-failed`` runs the failed ones again). A
task that fails for a reason leaky names (a ``LeakyError``: bad options, divergence) is recorded
with its error; a bug raises and stops the sweep. A sweep whose tasks all failed exits 1. ``leaky sweep --report OUT.jsonl`` writes a learning-curve
PNG (mean and spread over seeds) and prints a Markdown table of final greedy returns.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from leaky.core.errors import ConfigError


def load_spec(path: str) -> dict:
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"sweep spec {path!r}: cannot be read as JSON ({e})") from e
    for key in ("env", "steps", "seeds", "variants"):
        if key not in spec:
            raise ConfigError(f"sweep spec {path!r}: missing {key!r}; expected env, steps, seeds, variants")
    return spec


def tasks(spec: dict) -> list[dict]:
    """Every (variant, seed) of ``spec`` as a task; a field that is not a TrainConfig field is
    refused here, before anything runs (its values are checked by each task's TrainConfig)."""
    import dataclasses

    from leaky.training.loop import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for where, fields in [("common", spec.get("common", {}))] + [
            (f"variants.{name}", v) for name, v in spec["variants"].items()]:
        if not isinstance(fields, dict):
            raise ConfigError(f"sweep spec {where}: got {fields!r}, expected a mapping of TrainConfig fields")
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ConfigError(f"sweep spec {where}: {unknown} are not TrainConfig fields; expected some of "
                              f"{sorted(known - {'env', 'steps', 'seed', 'progress'})}")
    out = []
    for name, variant in spec["variants"].items():
        for seed in spec["seeds"]:
            fields = {**spec.get("common", {}), **variant, "env": spec["env"], "steps": spec["steps"],
                      "seed": seed, "progress": False}
            out.append({"variant": name, "seed": seed, "config": fields})
    return out


def run_task(task: dict) -> dict:
    """One training run; returns its JSON record.

    A run that fails for a reason leaky names (a :class:`~leaky.core.errors.LeakyError`: bad
    options, divergence, a file it cannot write) is a result too: its record holds ``error``.
    Anything else is a bug and raises (in a worker process, the sweep re-raises it), and so
    does Ctrl-C: neither is written to the results file.
    """
    from leaky.core.errors import LeakyError
    from leaky.core.threads import blas_threads
    from leaky.training.loop import TrainConfig, train

    t0 = time.time()
    record = {"variant": task["variant"], "seed": task["seed"], "config": task["config"],
              "blas_threads": blas_threads()}   # set when this worker imported leaky
    try:
        cfg = TrainConfig(**{k: tuple(v) if k == "hidden" else v for k, v in task["config"].items()})
        result = train(cfg)
        record.update(evaluations=result.evaluations, final=result.final_eval,
                      train_returns=result.train_returns[-20:], updates=result.updates,
                      update_ms=result.update_seconds / max(1, result.updates) * 1e3, metrics=result.metrics)
    except LeakyError as e:  # a failed task is a result too (divergence, bad options)
        record.update(error=f"{type(e).__name__}: {e}")
    record["seconds"] = time.time() - t0
    return record


def trace_path(trace_dir: str, task: dict) -> str:
    """Where a task's trace goes: ``<trace_dir>/<variant>-seed<seed>.h5``."""
    return os.path.join(trace_dir, f"{task['variant']}-seed{task['seed']}.h5")


def run_sweep(spec: dict, out: str, workers: int = 1, use_ray: bool = False, resume: bool = False,
              only: list[str] | None = None, retry_failed: bool = False, address: str | None = None,
              trace_dir: str | None = None, ray_retries: int = 2) -> list[dict]:
    """Run the tasks of ``spec`` (those of the variants ``only``), appending their records to
    ``out``; with ``resume``, skip the tasks ``out`` holds already, except failed ones when
    ``retry_failed`` (their new record is appended; the latest record of a task counts).

    ``trace_dir``: every task also writes its trace there (:func:`trace_path`). ``use_ray``: the
    tasks run as Ray tasks (one CPU each) on the cluster at ``address`` (``None``: a local Ray
    started for this sweep with ``workers`` CPUs, shut down after it); a task whose worker
    process dies is run again up to ``ray_retries`` times by Ray itself."""
    if only:
        unknown = sorted(set(only) - set(spec["variants"]))
        if unknown:
            raise ConfigError(f"sweep --only: got {unknown}, which are not variants of the spec; "
                              f"expected some of {sorted(spec['variants'])}")
    todo = [t for t in tasks(spec) if not only or t["variant"] in only]
    if trace_dir:
        os.makedirs(trace_dir, exist_ok=True)
        for t in todo:
            t["config"]["trace"] = trace_path(trace_dir, t)
    if resume and os.path.exists(out):
        done = {(r["variant"], r["seed"]) for r in latest(read_records(out))
                if not (retry_failed and "error" in r)}
        todo = [t for t in todo if (t["variant"], t["seed"]) not in done]
    records = []
    from tqdm.auto import tqdm

    with open(out, "a") as f, tqdm(total=len(todo), desc="sweep", unit="run") as bar:
        def emit(rec):
            f.write(json.dumps(rec) + "\n")
            f.flush()
            records.append(rec)
            bar.update(1)
            bar.set_postfix_str(f"{rec['variant']} seed {rec['seed']}: {rec.get('final', rec.get('error'))}")

        if use_ray:
            ray = _import_ray()
            started = not ray.is_initialized()
            if started:
                init = {"address": address} if address else {"num_cpus": max(1, workers)}
                ray.init(**init, include_dashboard=False, logging_level="warning")
            try:
                remote = ray.remote(num_cpus=1, max_retries=ray_retries)(run_task)
                pending = [remote.remote(t) for t in todo]
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    emit(ray.get(ready[0]))
            finally:
                if started:
                    ray.shutdown()
        elif workers <= 1:
            for t in todo:
                emit(run_task(t))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for fut in as_completed([pool.submit(run_task, t) for t in todo]):
                    emit(fut.result())
    return records


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"sweep --ray: Ray cannot be imported ({e}); expected it installed: "
                          "pip install 'leaky[ray]' (or run without --ray, on --workers)") from None
    return ray


def read_records(path: str) -> list[dict]:
    """The records of a results file (one JSON object per line)."""
    try:
        with open(path) as f:
            lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
    except OSError as e:
        raise ConfigError(f"sweep results {path!r}: cannot be read ({e.strerror or e}); expected a "
                          "JSON-lines file written by leaky sweep --out") from None
    records = []
    for i, line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ConfigError(f"sweep results {path!r}, line {i}: not JSON ({e.msg}); expected one "
                              "record per line, as leaky sweep --out writes") from None
    return records


def latest(records: list[dict]) -> list[dict]:
    """The last record of each (variant, seed), in the order they first appear: a retried
    task's new record replaces its failed one."""
    last = {}
    for r in records:
        last[(r["variant"], r["seed"])] = r
    return list(last.values())


def summarise(records: list[dict]) -> dict:
    """Per variant: final greedy returns over seeds (mean, std, best) and the curve (the latest
    record of each task)."""
    by = {}
    for r in latest(records):
        by.setdefault(r["variant"], []).append(r)
    out = {}
    for name, recs in by.items():
        ok = [r for r in recs if "error" not in r]
        finals = np.array([r["final"] for r in ok]) if ok else np.array([])
        steps = [e["step"] for e in ok[0]["evaluations"]] if ok else []
        curves = np.array([[e["mean"] for e in r["evaluations"]] for r in ok
                           if len(r["evaluations"]) == len(steps)]) if ok else np.zeros((0, 0))
        out[name] = {"seeds": sorted(r["seed"] for r in ok), "errors": [r["error"] for r in recs if "error" in r],
                     "final_mean": float(finals.mean()) if finals.size else float("nan"),
                     "final_std": float(finals.std()) if finals.size else float("nan"),
                     "best": float(finals.max()) if finals.size else float("nan"),
                     "finals": finals.tolist(), "steps": steps, "curves": curves.tolist(),
                     "update_ms": float(np.mean([r["update_ms"] for r in ok])) if ok else float("nan")}
    return out


def report(path: str, png: str | None = None, title: str = "") -> str:
    summary = summarise(read_records(path))
    lines = ["| variant | seeds | final greedy return (mean ± std) | best seed | per-seed | update ms |",
             "|---|---|---|---|---|---|"]
    for name, s in summary.items():
        per = ", ".join(f"{x:.0f}" for x in s["finals"])
        err = f" ({len(s['errors'])} failed)" if s["errors"] else ""
        lines.append(f"| {name} | {len(s['seeds'])}{err} | {s['final_mean']:.1f} ± {s['final_std']:.1f} | "
                     f"{s['best']:.1f} | {per} | {s['update_ms']:.2f} |")
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, s in summary.items():
            c = np.array(s["curves"])
            if c.size == 0:
                continue
            x = np.array(s["steps"])
            m = c.mean(axis=0)
            ax.plot(x, m, label=f"{name} ({c.shape[0]} seeds)")
            ax.fill_between(x, c.min(axis=0), c.max(axis=0), alpha=0.15)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("greedy return (mean; band: min–max over seeds)")
        ax.set_title(title or os.path.basename(path))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
    return "\n".join(lines)


def run(args) -> int:
    if args.report:
        if not os.path.isfile(args.report):
            raise ConfigError(f"sweep --report: got {args.report!r}, which is not a file; expected a "
                              "results file written by leaky sweep --out")
        print(report(args.report, args.png, args.title or ""))
        return 0
    if args.ray:
        _import_ray()          # before the results file is touched
    if not args.spec or not args.out:
        raise ConfigError("sweep: expected SPEC and --out (or --report FILE)")
    if args.retry_failed and not args.resume:
        raise ConfigError("sweep --retry-failed: expected it with --resume (it retries the failed "
                          "tasks of the results file a resumed sweep continues)")
    spec = load_spec(args.spec)
    if args.address and not args.ray:
        raise ConfigError(f"sweep --address: got {args.address!r} without --ray; expected --ray "
                          "--address HOST:PORT (a running Ray cluster's head)")
    records = run_sweep(spec, args.out, workers=args.workers, use_ray=args.ray, resume=args.resume,
                        only=args.only, retry_failed=args.retry_failed, address=args.address,
                        trace_dir=args.trace_dir)
    if args.json:
        print(json.dumps(summarise(records)))
    else:
        print(report(args.out))
    failed = [r for r in records if "error" in r]
    if records and len(failed) == len(records):
        first = failed[0]
        print(f"leaky sweep: error: all {len(records)} tasks failed; the first, {first['variant']} seed "
              f"{first['seed']}: {first['error']}", file=sys.stderr)
        return 1
    if failed:
        print(f"leaky sweep: {len(failed)} of {len(records)} tasks failed (their errors are in "
              f"{args.out}; --resume --retry-failed runs them again)", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run (variant, seed) training grids; report them",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("spec", nargs="?", help="JSON spec (see leaky/training/sweep.py)")
    p.add_argument("--out", help="JSON-lines results file (appended)")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine")
    p.add_argument("--ray", action="store_true",
                   help="run the tasks on Ray (leaky[ray]): a local Ray with --workers CPUs, or --address")
    p.add_argument("--address", help="with --ray: a running Ray cluster's head, HOST:PORT (or 'auto')")
    p.add_argument("--trace-dir", help="every task also writes its trace here, as <variant>-seed<seed>.h5")
    p.add_argument("--resume", action="store_true", help="skip tasks already in --out")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: run the tasks whose record in --out is an error again")
    p.add_argument("--only", nargs="*", help="run only these variants")
    p.add_argument("--report", metavar="JSONL", help="summarise a results file instead of running")
    p.add_argument("--png", help="with --report: write the learning curves here")
    p.add_argument("--title", help="with --report: plot title")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
