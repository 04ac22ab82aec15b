"""``leaky table``: the normalised results table, made from sweep results files.

A table spec is a JSON file (``experiments/table/table.json`` is the real one)::

    {"random_episodes": 100,
     "tasks": [{"name": "pendulum", "env": "Pendulum-v1",
                "results": "results/table/pendulum.jsonl",       # leaky sweep --out
                "reference": {"return": -151.855, "source": "RL-Zoo benchmark.md, td3"},
                "seed_row": {"name": "pendulum", "values": [0.946, 1.021, ...]}}]}

Relative paths are relative to the spec's folder. Every final greedy return ``R`` of a results
file (the latest record of each (variant, seed), as ``leaky sweep --report`` reads them) is
normalised as ``(R - R_random) / (R_ref - R_random)``: a uniformly random policy scores 0 and the
reference return scores 1. ``R_random`` is measured here (:func:`random_return`: the mean over
``random_episodes`` seeded episodes of ``action_space.sample()``), ``R_ref`` and its source come
from the spec. Per task and variant the table gives the mean ± standard deviation over seeds and
the best seed, and, beside them, the ``seed_row``: the figures of the seed paper's table for the
matching task (Lillicrap et al. 2016, Table 1, normalised with random = 0 and an iLQG planner =
1; not comparable, printed for orientation only). Docs: docs/results.md, "The results table".
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from leaky.core.errors import ConfigError

SEED_COLUMNS = ("R_av,lowd", "R_best,lowd", "R_av,pix", "R_best,pix", "R_av,cntrl", "R_best,cntrl")


def random_return(env_id: str, episodes: int = 100) -> float:
    """Mean return of a uniformly random policy: ``episodes`` episodes reset with seeds
    10000, 10001, …, actions from ``action_space.sample()`` seeded with 0."""
    import gymnasium as gym

    import leaky.training.envs  # noqa: F401  (leaky's own ids too)

    env = gym.make(env_id)
    try:
        env.action_space.seed(0)
        total = []
        for ep in range(episodes):
            env.reset(seed=10_000 + ep)
            done, ret = False, 0.0
            while not done:
                _, r, term, trunc, _ = env.step(env.action_space.sample())
                ret, done = ret + float(r), term or trunc
            total.append(ret)
    finally:
        env.close()
    return float(np.mean(total))


def normalise(returns, random: float, reference: float) -> np.ndarray:
    """``(R - random) / (reference - random)``: random = 0, reference = 1."""
    if not reference != random:
        raise ConfigError(f"table: reference return {reference} equals the random return {random}; "
                          "expected a reference a random policy does not reach")
    return (np.asarray(returns, dtype=np.float64) - random) / (reference - random)


def load_table_spec(path: str) -> dict:
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"table spec {path!r}: cannot be read as JSON ({e})") from None
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ConfigError(f"table spec {path!r}: expected 'tasks', a non-empty list")
    for i, t in enumerate(tasks):
        missing = [k for k in ("name", "env", "results", "reference") if k not in t]
        if missing:
            raise ConfigError(f"table spec {path!r}, tasks[{i}]: missing {missing}; expected name, env, "
                              "results, reference (and optionally seed_row)")
        ref = t["reference"]
        if not isinstance(ref, dict) or not isinstance(ref.get("return"), (int, float)) or not ref.get("source"):
            raise ConfigError(f"table spec {path!r}, tasks[{i}].reference: got {ref!r}; expected "
                              "{'return': a number, 'source': where it comes from}")
        row = t.get("seed_row")
        if row is not None and (not isinstance(row, dict) or len(row.get("values", ())) != len(SEED_COLUMNS)):
            raise ConfigError(f"table spec {path!r}, tasks[{i}].seed_row: expected {{'name', 'values'}} "
                              f"with {len(SEED_COLUMNS)} values ({', '.join(SEED_COLUMNS)})")
    return spec


def build(spec: dict, root: str = ".", random_returns: dict | None = None) -> list[dict]:
    """One entry per task: its random and reference returns and, per variant, the raw and
    normalised finals over seeds. ``random_returns`` (env id → return) skips measuring them."""
    from leaky.training.sweep import read_records, summarise

    episodes = int(spec.get("random_episodes", 100))
    rows = []
    for t in spec["tasks"]:
        path = t["results"] if os.path.isabs(t["results"]) else os.path.join(root, t["results"])
        if not os.path.isfile(path):
            raise ConfigError(f"table: task {t['name']!r}: no results file {path!r}; expected the --out "
                              f"of its sweep (leaky sweep SPEC --out {t['results']})")
        records = read_records(path)
        envs = {r["config"]["env"] for r in records}
        if envs - {t["env"]}:
            raise ConfigError(f"table: task {t['name']!r}: {path!r} holds runs on {sorted(envs)}; "
                              f"expected only {t['env']!r}")
        rand = (random_returns or {}).get(t["env"])
        if rand is None:
            rand = random_return(t["env"], episodes)
        ref = float(t["reference"]["return"])
        variants = {}
        for name, s in summarise(records).items():
            steps = {r["config"]["steps"] for r in records if r["variant"] == name}
            norm = normalise(s["finals"], rand, ref)
            variants[name] = {"seeds": s["seeds"], "errors": s["errors"], "finals": s["finals"],
                              "steps": sorted(steps), "normalised": norm.tolist(),
                              "mean": float(norm.mean()) if norm.size else math.nan,
                              "std": float(norm.std()) if norm.size else math.nan,
                              "best": float(norm.max()) if norm.size else math.nan}
        rows.append({"name": t["name"], "env": t["env"], "random": rand, "reference": ref,
                     "source": t["reference"]["source"], "seed_row": t.get("seed_row"),
                     "variants": variants})
    return rows


def markdown(rows: list[dict]) -> str:
    """The normalised table (mean ± std over seeds, best seed) with the seed paper's
    R_av,lowd and R_best,lowd beside it, then the returns behind it."""
    names = list(dict.fromkeys(v for r in rows for v in r["variants"]))
    head = ["task", "steps", "seeds"] + [f"{v} mean ± std (best)" for v in names] + \
           ["seed paper row", "its R_av,lowd (R_best,lowd)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vs = [r["variants"].get(v) for v in names]
        steps = sorted({s for v in vs if v for s in v["steps"]})
        counts = [len(v["seeds"]) if v else 0 for v in vs]       # per variant, in column order
        seeds = counts[:1] if len(set(counts)) == 1 else counts
        cells = [f"{v['mean']:.2f} ± {v['std']:.2f} ({v['best']:.2f})" if v and v["seeds"] else "–" for v in vs]
        row = r["seed_row"]
        seed_cells = [row["name"], f"{row['values'][0]:.3f} ({row['values'][1]:.3f})"] if row else ["–", "–"]
        out.append("| " + " | ".join([f"{r['name']} ({r['env']})", "/".join(f"{s // 1000}k" for s in steps),
                                      "/".join(map(str, seeds))] + cells + seed_cells) + " |")
    out += ["", "| task | random return (measured) | reference return | source | " +
            " | ".join(f"{v} finals" for v in names) + " |", "|" + "---|" * (4 + len(names))]
    for r in rows:
        finals = [", ".join(f"{x:.1f}" for x in r["variants"][v]["finals"]) if v in r["variants"] else "–"
                  for v in names]
        out.append(f"| {r['name']} | {r['random']:.1f} | {r['reference']:g} | {r['source']} | " +
                   " | ".join(finals) + " |")
    errors = [(r["name"], v, e) for r in rows for v, s in r["variants"].items() for e in s["errors"]]
    if errors:
        out += ["", "Failed runs (not in the means):"] + [f"- {t} {v}: {e}" for t, v, e in errors]
    return "\n".join(out)


def run(args) -> int:
    spec = load_table_spec(args.spec)
    rows = build(spec, root=os.path.dirname(os.path.abspath(args.spec)))
    if args.json:
        print(json.dumps(rows))
    else:
        print(markdown(rows))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="the normalised results table from sweep results files",
                       description="Normalise the final greedy returns of sweep results files "
                                   "(random policy = 0, a stated reference return = 1) and print "
                                   "them per task and variant beside the seed paper's table.")
    p.add_argument("spec", help="JSON table spec (see leaky/training/table.py; experiments/table/table.json)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)
