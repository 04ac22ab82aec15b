"""Traces: one HDF5 file per run, readable while it is written and after a crash.

A trace is written by :class:`Trace` (used by the training loop) and read by
:class:`TraceReader` / :func:`open_trace` (used by ``leaky inspect``, ``leaky plot``,
``leaky export --minari`` and by researchers). The layout is flat and step-major, as D4RL's
(docs/design.md#7-traces; every field is documented in ``docs/trace-format.md``)::

    /steps/observations   (R, obs_dim)      s_t, the observation the action was taken on
    /steps/actions        (R, act_dim)      a_t as sent to the env
    /steps/rewards        (R,) float64      r_t
    /steps/terminations   (R,) bool
    /steps/truncations    (R,) bool
    /steps/env_index      (R,) int32        which env of the vector (one of the logged envs)
    /steps/voltages       (R, L, n) float32 L = ℓ+1 (voltages="all") or 1 (the last), n logged neurons
    /steps/q_local        (R, n) float32    per-neuron critic value Q_n(x, α)
    /steps/td_error       (R, n) float32    per-neuron TD error δ_n
    /steps/noise          (R, n) float32    per-neuron exploration noise ξ (decision step)
    /episodes/{start, length, return, env_index, terminated, final_observation}
    /training/step and one dataset per declared field (per-update scalars or vectors)
    /weights/{step, K, b} snapshots every ``weight_every`` steps
    /meta/counts          committed row/episode/update/snapshot counts and the writer's status
    /meta/envs, /meta/neurons   the logged env and neuron indices

Row ``r`` holds env ``envs[r % E]`` at logged vector step ``r // E`` (``E`` logged envs), so
the rows of one episode are ``start + E·k`` for ``k < length``: a strided slice.

Why SWMR and ``meta/counts``: HDF5's single-writer/multiple-reader mode lets another process
read the file while it grows, and leaves a readable file when the writer is killed; it forbids
creating objects once live, so everything is created up front. Data is written and flushed
first, then ``meta/counts`` is advanced and flushed: a reader trusts only the counted rows, so
it never sees half a step, whatever moment the writer stopped.

The package, one module a job: :mod:`leaky.trace.format` (names, versions, fields, defaults and
the layout helpers), :mod:`leaky.trace.writer` (:class:`Trace`), :mod:`leaky.trace.reader`
(:class:`TraceReader`, :func:`open_trace`), :mod:`leaky.trace.minari` (:func:`export_minari`)
and :mod:`leaky.trace.cli` (``leaky inspect``, ``plot``, ``export``).
"""

from __future__ import annotations

from leaky.trace.format import (COUNT_FIELDS, DEFAULT_COMPRESSION, DEFAULT_FLUSH_EVERY,
                                DEFAULT_TRAINING_FIELDS, FORMAT_NAME, FORMAT_VERSION,
                                compression_options, default_neurons, dependency_versions)
from leaky.trace.minari import export_minari
from leaky.trace.reader import DatasetInfo, Episode, EpisodeIndex, TraceReader, open_trace
from leaky.trace.writer import Trace

__all__ = [
    "COUNT_FIELDS", "DEFAULT_COMPRESSION", "DEFAULT_FLUSH_EVERY", "DEFAULT_TRAINING_FIELDS", "DatasetInfo", "Episode", "EpisodeIndex",
    "FORMAT_NAME", "FORMAT_VERSION", "Trace", "TraceReader", "compression_options",
    "default_neurons", "dependency_versions", "export_minari", "open_trace",
]
