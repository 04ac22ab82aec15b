"""Tables and figures of the credit-rule experiments from `leaky sweep` result files.

    python experiments/credit/report.py experiments/results/credit_pendulum.jsonl \
        --title "Pendulum-v1" --png docs/figures/credit_pendulum.png \
        --alignment-png docs/figures/credit_pendulum_alignment.png --at 10000 30000 50000

Prints a Markdown table: per variant, the greedy return (mean ± std over seeds) at each `--at`
step and at the end, the per-seed finals, and the per-layer cosine of the rule's actor gradient
with BPTT's (mean over the whole run and seeds; only variants run with `align_every`). The
learning-curve PNG shows the mean and the min–max band over seeds; the alignment PNG the cosine
per layer over training (mean over seeds; band min–max).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    by = {}
    for r in records:
        if "error" not in r:
            by.setdefault(r["variant"], {})[r["seed"]] = r      # the latest run of a (variant, seed)
    return by


def at_step(record, step):
    """The evaluation mean at ``step`` (the first evaluation at or after it)."""
    for e in record["evaluations"]:
        if e["step"] >= step:
            return e["mean"]
    return float("nan")


def cos_keys(records):
    keys = set()
    for r in records:
        for m in r.get("metrics") or []:
            keys |= {k for k in m if k.startswith("cos_")}
    order = sorted(k for k in keys if k.startswith("cos_tau")) + [k for k in ("cos_out", "cos_all") if k in keys]
    return order


def table(by, at):
    keys = sorted({k for v in by.values() for k in cos_keys(v.values())},
                  key=lambda k: (not k.startswith("cos_tau"), k))
    head = ["variant", "seeds"] + [f"{s // 1000}k" for s in at] + ["final", "per seed (final)"] + keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, seeds in by.items():
        recs = [seeds[s] for s in sorted(seeds)]
        cells = [name, str(len(recs))]
        for s in at:
            v = np.array([at_step(r, s) for r in recs])
            cells.append(f"{v.mean():.0f} ± {v.std():.0f}")
        finals = np.array([r["final"] for r in recs])
        cells.append(f"{finals.mean():.1f} ± {finals.std():.1f}")
        cells.append(", ".join(f"{x:.0f}" for x in finals))
        for k in keys:
            vals = [m[k] for r in recs for m in (r.get("metrics") or []) if k in m and np.isfinite(m[k])]
            cells.append(f"{np.mean(vals):.2f}" if vals else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hold_table(by, level):
    """Per variant and seed: the first evaluation at or above ``level`` and the first from which
    every later evaluation stays there (``never`` when it is not reached, or not held to the end)."""
    lines = [f"| variant | first ≥ {level:g} (per seed) | held from (per seed) |", "|---|---|---|"]
    for name, seeds in by.items():
        first, held = [], []
        for s in sorted(seeds):
            ev = seeds[s]["evaluations"]
            hit = [e["step"] for e in ev if e["mean"] >= level]
            first.append(f"{hit[0] // 1000}k" if hit else "never")
            since = None
            for e in ev:
                since = (since or e["step"]) if e["mean"] >= level else None
            held.append(f"{since // 1000}k" if since else "never")
        lines.append(f"| {name} | {', '.join(first)} | {', '.join(held)} |")
    return "\n".join(lines)


def curves_png(by, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, seeds in by.items():
        recs = [seeds[s] for s in sorted(seeds)]
        n = min(len(r["evaluations"]) for r in recs)
        x = np.array([e["step"] for e in recs[0]["evaluations"][:n]])
        c = np.array([[e["mean"] for e in r["evaluations"][:n]] for r in recs])
        ax.plot(x, c.mean(axis=0), label=f"{name} ({len(recs)} seeds)")
        ax.fill_between(x, c.min(axis=0), c.max(axis=0), alpha=0.12)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("greedy return (mean; band: min–max over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def alignment_png(by, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aligned = {n: s for n, s in by.items() if cos_keys(s.values())}
    if not aligned:
        return
    fig, axes = plt.subplots(1, len(aligned), figsize=(3.6 * len(aligned), 3.4), sharey=True, squeeze=False)
    for ax, (name, seeds) in zip(axes[0], aligned.items()):
        recs = [seeds[s] for s in sorted(seeds)]
        for k in cos_keys(recs):
            if k == "cos_all":
                continue
            rows = []
            for r in recs:
                pts = [(m["step"], m[k]) for m in r["metrics"] if k in m and np.isfinite(m[k])]
                rows.append(pts)
            n = min(len(p) for p in rows)
            if n == 0:
                continue
            x = np.array([p[0] for p in rows[0][:n]])
            v = np.array([[p[1] for p in pts[:n]] for pts in rows])
            label = {"cos_out": "output"}.get(k, f"hidden, decision step {k[len('cos_tau'):]}")
            ax.plot(x, v.mean(axis=0), label=label)
            ax.fill_between(x, v.min(axis=0), v.max(axis=0), alpha=0.15)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.axhline(0, color="k", lw=0.5)
    axes[0][0].set_ylabel("cosine with BPTT's actor gradient")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="leaky sweep JSON-lines files")
    p.add_argument("--title", default="")
    p.add_argument("--png", help="learning curves")
    p.add_argument("--alignment-png", help="per-layer cosine with BPTT over training")
    p.add_argument("--at", type=int, nargs="*", default=[10_000, 30_000])
    p.add_argument("--only", nargs="*", help="these variants, in this order")
    p.add_argument("--hold", type=float, help="also tabulate when each seed first reaches, and holds, this return")
    args = p.parse_args(argv)
    by = load(args.results)
    if args.only:
        by = {k: by[k] for k in args.only if k in by}
    print(table(by, args.at))
    if args.hold is not None:
        print()
        print(hold_table(by, args.hold))
    if args.png:
        curves_png(by, args.png, args.title)
    if args.alignment_png:
        alignment_png(by, args.alignment_png, args.title)


if __name__ == "__main__":
    main()
