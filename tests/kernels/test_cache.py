"""Numba's on-disk cache: a process that loads the cpu kernels computes what the process that
compiled them computed, bit for bit (docs/kernels.md, "Compiled once, the same everywhere")."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _probe(cache_dir, out, which):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-m", "tests.kernels.cache_probe", str(out), which], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def test_a_process_that_loads_the_cache_computes_what_the_compiling_one_did(tmp_path):
    cache = tmp_path / "numba-cache"
    # the compiling process: only the serial step schedule (as a training run compiles it)
    fresh = _probe(cache, tmp_path / "fresh.npz", "serial")
    assert any(cache.rglob("*.nbc")), "the first process wrote no cache"
    # the loading process: the serial schedule from the cache, then the parallel ones compiled
    # here, which call the same helper kernels; the short run's kernels all come from the cache
    warm = _probe(cache, tmp_path / "warm.npz", "all")
    for name in ("V", "z", "y", "alpha"):
        want = fresh[f"step_serial_{name}"]
        assert np.isfinite(want).all()
        for schedule in ("serial", "rows", "neurons"):
            np.testing.assert_array_equal(warm[f"step_{schedule}_{name}"], want,
                                          err_msg=f"{schedule} {name}")
    for rule in ("critic", "feedback"):
        for part in ("actions", "K", "b", "state"):
            key = f"run_{rule}_{part}"
            np.testing.assert_array_equal(warm[key], fresh[key], err_msg=key)
