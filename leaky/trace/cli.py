"""``leaky inspect``, ``leaky plot`` and ``leaky export``: the command line over traces.

    leaky inspect run.h5 [--json] [--verify]     summary: episodes, returns, datasets, config
    leaky plot run.h5 [--out DIR] [--episode I] [--neurons 3,4,5]
    leaky export --minari run.h5 OUT_DIR [--dataset-id leaky/run-v0] [--force]

All three work on a trace that is still being written (they read what was last flushed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from leaky.core.errors import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="summarise a trace (live ones too)",
        description="Summarise a leaky trace: status, episodes, returns and lengths, training "
                    "table, datasets with shapes, sizes and compression ratios, config. Works "
                    "on a file that is still being written.")
    p.add_argument("file", help="trace file (.h5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verify", action="store_true",
                   help="also read every byte (checksums, decompression) and report damage")
    p.set_defaults(func=run_inspect)

    p = subparsers.add_parser(
        "plot", help="draw learning curves, voltage rasters and critic values to PNG",
        description="Write PNGs of a trace: learning_curve.png (episode returns and training "
                    "scalars), voltages.png (raster of chosen neurons over one episode), "
                    "critic.png (per-neuron critic values and TD errors over that episode) and, "
                    "when the training table has per-neuron fields, per_neuron.png (median and "
                    "quartiles over neurons).")
    p.add_argument("file", help="trace file (.h5)")
    p.add_argument("--out", help="output directory (default: FILE without .h5, plus _plots)")
    p.add_argument("--episode", type=int, default=-1,
                   help="finished episode for the raster and critic plots (default -1: the last)")
    p.add_argument("--neurons", type=_int_list, default=None,
                   help="comma-separated neuron indices (default: every logged neuron, up to 64)")
    p.add_argument("--dpi", type=int, default=110)
    p.add_argument("--json", action="store_true", help="print the written files as JSON")
    p.set_defaults(func=run_plot)

    p = subparsers.add_parser(
        "export", help="export a trace's episodes for other RL tooling (Minari)",
        description="Write the finished episodes of a trace in Farama Minari's layout: "
                    "OUT_DIR/data/main_data.hdf5 (episode_<id> groups with observations (T+1), "
                    "actions, rewards, terminations, truncations) and OUT_DIR/data/metadata.json. "
                    "Load with minari.MinariDataset('OUT_DIR/data').")
    p.add_argument("--minari", action="store_true", required=True,
                   help="export format (the only one): Farama Minari")
    p.add_argument("file", help="trace file (.h5)")
    p.add_argument("out_dir", help="output directory (created)")
    p.add_argument("--dataset-id", default=None,
                   help="Minari dataset id '(namespace/)name-vN' (default leaky/<file stem>-v0)")
    p.add_argument("--force", action="store_true", help="replace a dataset already in OUT_DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_export)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


# ---------------------------------------------------------------------------------------------
# inspect

def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def run_inspect(args) -> int:
    from leaky.trace import open_trace

    with open_trace(args.file) as tr:
        summary = tr.summary()
        if args.verify:
            summary["verified_bytes"] = tr.verify(progress=not args.json)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    """The text ``leaky inspect`` prints for a :meth:`TraceReader.summary`."""
    lines = [f"trace {s['path']}  ({s['format']} v{s['format_version']}, {s['status']}, "
             f"{_bytes(s['file_bytes'])}, created {s['created']})"]
    if s["status"] == "open":
        lines.append(f"  open: being written, or its writer stopped without closing; last flush "
                     f"{s['last_flush_age_s']:.1f} s ago")
    lines.append(f"  run: {s['vector_steps']} vector steps of {s['n_envs']} envs, {s['n_neurons']} "
                 f"neurons, delay {s['delay']}; logging envs {s['logged_envs']}, "
                 f"{len(s['logged_neurons'])} neurons ({s['voltages']} voltages), {s['rows']} rows")
    ep = s["episodes"]
    if ep["count"]:
        r, n = ep["return"], ep["length"]
        lines.append(f"  episodes: {ep['count']} finished ({ep['terminated']} terminated)")
        lines.append(f"    return  mean {r['mean']:.4g}  min {r['min']:.4g}  max {r['max']:.4g}  last {r['last']:.4g}")
        lines.append(f"    length  mean {n['mean']:.4g}  min {n['min']:.0f}  max {n['max']:.0f}  last {n['last']:.0f}")
    else:
        lines.append("  episodes: none finished yet")
    tr = s["training"]
    lines.append(f"  training: {tr['updates']} updates")
    for k, v in tr["last"].items():
        if k != "step" and v is not None and np.ndim(v) == 0 and np.isfinite(v):
            lines.append(f"    {k:<24s} last {v:.6g}")
    lines.append(f"  weights: {s['weights']['snapshots']} snapshots")
    lines.append(f"  datasets ({_bytes(s['stored_bytes'])} stored, {_bytes(s['raw_bytes'])} raw, "
                 f"ratio {s['compression_ratio'] or float('nan'):.2f}):")
    width = max(len(d["name"]) for d in s["datasets"])
    lines.append(f"    {'name':<{width}s}  {'shape':<16s} {'dtype':<8s} {'stored':>9s} {'raw':>9s} {'ratio':>6s}  codec")
    for d in s["datasets"]:
        ratio = "" if d["ratio"] is None else f"{d['ratio']:.2f}"
        lines.append(f"    {d['name']:<{width}s}  {str(tuple(d['shape'])):<16s} {d['dtype']:<8s} "
                     f"{_bytes(d['stored_bytes']):>9s} {_bytes(d['raw_bytes']):>9s} {ratio:>6s}  {d['compression']}")
    if "verified_bytes" in s:
        lines.append(f"  verify: every committed byte read back intact ({_bytes(s['verified_bytes'])})")
    lines.append(f"  seeds: {json.dumps(s['seeds'])}")
    lines.append(f"  versions: {', '.join(f'{k} {v}' for k, v in s['versions'].items() if k != 'platform')}")
    lines.append(f"  config: {json.dumps(s['config'], sort_keys=True)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# plot

def run_plot(args) -> int:
    from leaky.trace import open_trace

    out = Path(args.out) if args.out else Path(args.file).with_name(Path(args.file).stem + "_plots")
    _check_writable_dir(out, "--out" if args.out else "the default output directory")
    with open_trace(args.file) as tr:
        files = plot_trace(tr, out, episode=args.episode, neurons=args.neurons, dpi=args.dpi)
    if args.json:
        print(json.dumps({"files": [str(f) for f in files]}))
    else:
        for f in files:
            print(f)
    return 0


def _check_writable_dir(out: Path, what: str) -> None:
    """Make ``out`` (and its parents) and write a probe file there, before any work is done."""
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise InputError(f"plot {what}: cannot write to {str(out)!r} ({e.strerror or e}); expected "
                         "a directory that exists or can be made, and is writable") from None


def plot_trace(tr, out_dir, *, episode: int = -1, neurons=None, dpi: int = 110) -> list[Path]:
    """Draw a trace's figures into ``out_dir``; returns the PNG paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []

    # learning curve: episode returns over env steps, plus the training table's scalars
    training = tr.training()
    scalars = [k for k, v in training.items()
               if k != "step" and v.ndim == 1 and np.isfinite(v).any()]
    fig, axes = plt.subplots(1 + min(len(scalars), 5), 1, figsize=(8, 2.6 * (1 + min(len(scalars), 5))),
                             squeeze=False, sharex=False)
    ax = axes[0, 0]
    idx = tr.episodes()
    if len(idx):
        E = max(1, len(tr.envs))
        end_step = (idx.start + E * (idx.length - 1)) // E + 1        # vector steps at the end
        env_steps = end_step * tr.n_envs
        order = np.argsort(env_steps, kind="stable")
        for env in np.unique(idx.env):
            m = idx.env == env
            ax.plot(env_steps[m], idx.returns[m], ".", ms=3, alpha=0.5, label=f"env {env}")
        w = max(1, len(idx) // 20)
        smooth = np.convolve(idx.returns[order], np.ones(w) / w, mode="valid")
        ax.plot(env_steps[order][w - 1:], smooth, "k-", lw=1.5, label=f"mean of {w}")
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no finished episode yet", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="env steps (vector steps × n_envs)", ylabel="episode return",
           title=f"{tr.path.name}: learning curve ({tr.status})")
    for k, name in enumerate(scalars[:5]):
        a = axes[k + 1, 0]
        a.plot(training["step"], training[name], lw=1)
        a.set(xlabel="step", ylabel=name)
    fig.tight_layout()
    files.append(_save(fig, out_dir / "learning_curve.png", dpi))

    # per-neuron training fields (e.g. gradient alignment): median and quartiles over neurons
    vectors = [k for k, v in training.items() if v.ndim == 2 and np.isfinite(v).any()]
    if vectors:
        fig, axes = plt.subplots(len(vectors), 1, figsize=(8, 2.6 * len(vectors)), squeeze=False)
        for a, name in zip(axes[:, 0], vectors):
            v = training[name]
            q1, med, q3 = np.nanpercentile(v, [25, 50, 75], axis=1)
            a.fill_between(training["step"], q1, q3, alpha=0.3, label="quartiles")
            a.plot(training["step"], med, lw=1.2, label="median over neurons")
            a.set(xlabel="step", ylabel=name)
            a.legend(fontsize=7)
        fig.tight_layout()
        files.append(_save(fig, out_dir / "per_neuron.png", dpi))

    if not len(idx) or not tr.has_neurons:
        return files
    if neurons is None:
        neurons = tr.neurons[:64]
    ep = tr.episode(episode, neurons=neurons)
    T, L = ep.voltages.shape[0], ep.voltages.shape[1]
    V = ep.voltages.reshape(T * L, -1).T                    # (neurons, internal time)
    fig, ax = plt.subplots(figsize=(9, 0.18 * len(ep.neurons) + 2))
    lim = _sym_limit(V)
    im = ax.imshow(V, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim,
                   extent=(0, T, len(ep.neurons) - 0.5, -0.5))
    ax.set_yticks(range(len(ep.neurons)), [str(n) for n in ep.neurons], fontsize=6)
    ax.set(xlabel="env step" + (f" ({L} internal steps each)" if L > 1 else ""), ylabel="neuron",
           title=f"voltages, episode {ep.index} (env {ep.env}, return {ep.total_return:.4g})")
    fig.colorbar(im, ax=ax, label="V")
    fig.tight_layout()
    files.append(_save(fig, out_dir / "voltages.png", dpi))

    fig, axes = plt.subplots(2, 1, figsize=(9, 2 * (0.18 * len(ep.neurons) + 1.5)), squeeze=False)
    for a, name, data in ((axes[0, 0], "critic value Q_n", ep.q_local), (axes[1, 0], "TD error δ_n", ep.td_error)):
        lim = _sym_limit(data)
        im = a.imshow(data.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-lim, vmax=lim,
                      extent=(0, T, len(ep.neurons) - 0.5, -0.5))
        a.set_yticks(range(len(ep.neurons)), [str(n) for n in ep.neurons], fontsize=6)
        a.set(xlabel="env step", ylabel="neuron", title=f"{name}, episode {ep.index}")
        fig.colorbar(im, ax=a)
    fig.tight_layout()
    files.append(_save(fig, out_dir / "critic.png", dpi))
    return files


def _sym_limit(x) -> float:
    x = np.asarray(x)
    finite = np.abs(x[np.isfinite(x)])
    return float(np.percentile(finite, 99)) if finite.size and finite.max() > 0 else 1.0


def _save(fig, path: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# export

def run_export(args) -> int:
    from leaky.trace import export_minari

    if not args.minari:
        raise InputError("leaky export: choose a format (--minari)")
    result = export_minari(args.file, args.out_dir, dataset_id=args.dataset_id,
                           overwrite=args.force, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {result['episodes']} episodes ({result['steps']} steps) to "
              f"{result['data_path']} as Minari dataset {result['dataset_id']!r}")
    return 0

