"""BLAS threads: one, set when leaky is imported; the user's choice wins (leaky/core/threads.py)."""

import json
import os
import subprocess
import sys

import pytest

from leaky.core import threads
from leaky.training.sweep import read_records

BLAS_VARIABLES = (threads.ENV, *threads.USER_BLAS_VARIABLES, threads.NUMBA_ENV, *threads.USER_NUMBA_VARIABLES)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    env.update(extra)
    return env


def _threads_after_import(env, before=3):
    """BLAS threads in a fresh process that first gives NumPy's BLAS ``before`` threads (so the
    count does not depend on the machine's cores), then imports leaky."""
    code = ("import numpy, threadpoolctl; threadpoolctl.threadpool_limits({before}, user_api='blas');"
            "import leaky; print(leaky.blas_threads())").format(before=before)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip()), done.stderr


def test_importing_leaky_holds_blas_to_one_thread():
    got, _ = _threads_after_import(_clean_env())
    assert got == 1


def test_the_user_chooses_with_leaky_blas_threads_or_their_own_blas_variable():
    assert _threads_after_import(_clean_env(LEAKY_BLAS_THREADS="2"))[0] == 2
    assert _threads_after_import(_clean_env(LEAKY_BLAS_THREADS="auto"))[0] == 3   # left alone
    assert _threads_after_import(_clean_env(OPENBLAS_NUM_THREADS="2"))[0] == 3    # theirs rules
    got, err = _threads_after_import(_clean_env(LEAKY_BLAS_THREADS="many"))
    assert got == 1 and "LEAKY_BLAS_THREADS: got 'many', expected an int >= 1 or 'auto'" in err


def test_requested_threads_reads_the_environment():
    assert threads.requested_threads({}) == 1
    assert threads.requested_threads({"LEAKY_BLAS_THREADS": "4"}) == 4
    assert threads.requested_threads({"LEAKY_BLAS_THREADS": " auto "}) is None
    assert threads.requested_threads({"MKL_NUM_THREADS": "8"}) is None
    assert threads.requested_threads({"MKL_NUM_THREADS": "8", "LEAKY_BLAS_THREADS": "2"}) == 2
    with pytest.warns(RuntimeWarning, match="got '0'"):
        assert threads.requested_threads({"LEAKY_BLAS_THREADS": "0"}) == 1


def test_set_blas_threads_checks_its_argument():
    from leaky import ConfigError

    with pytest.raises(ConfigError, match="set_blas_threads: got 0, expected an int >= 1"):
        threads.set_blas_threads(0)


def test_sweep_workers_run_blas_on_one_thread(tmp_path):
    """The worker processes of ``leaky sweep --workers`` run BLAS on one thread: they fork from
    a process that imported leaky (or, spawned or on Ray, import it themselves). The parent gives
    BLAS three threads first, which the workers would inherit if importing leaky did nothing."""
    spec = {"env": "Pendulum-v1", "steps": 40, "seeds": [0, 1],
            "common": {"n_envs": 2, "hidden": [4], "eval_every": 40, "eval_episodes": 1},
            "variants": {"np": {"learner": "perturbation"}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out.jsonl"
    code = ("import sys, threadpoolctl; threadpoolctl.threadpool_limits(3, user_api='blas');"
            "from leaky.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "sweep", str(path), "--out", str(out),
                           "--workers", "2"], env=_clean_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(out)
    assert len(records) == 2 and all("error" not in r for r in records)
    assert [r["blas_threads"] for r in records] == [1, 1]


def _numba_threads_after_import(env):
    code = "import numba; import leaky; print(numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got, pool = map(int, done.stdout.split())
    return got, pool, done.stderr


def test_importing_leaky_runs_numba_kernels_on_one_thread_unless_the_user_chooses():
    assert _numba_threads_after_import(_clean_env(NUMBA_NUM_THREADS="2"))[:2] == (2, 2)    # theirs rules
    assert _numba_threads_after_import(_clean_env(NUMBA_NUM_THREADS="2", LEAKY_NUMBA_THREADS="1"))[:2] == (1, 2)
    assert _numba_threads_after_import(_clean_env(NUMBA_NUM_THREADS="2", LEAKY_NUMBA_THREADS="auto"))[:2] == (2, 2)
    assert _numba_threads_after_import(_clean_env(NUMBA_NUM_THREADS="2", LEAKY_NUMBA_THREADS="8"))[:2] == (2, 2)
    got, pool, _ = _numba_threads_after_import(_clean_env())
    assert got == 1 and pool >= 1
    got, _, err = _numba_threads_after_import(_clean_env(LEAKY_NUMBA_THREADS="lots"))
    assert got == 1 and "LEAKY_NUMBA_THREADS: got 'lots', expected an int >= 1 or 'auto'" in err


def test_requested_numba_threads_reads_the_environment():
    assert threads.requested_numba_threads({}) == 1
    assert threads.requested_numba_threads({"LEAKY_NUMBA_THREADS": "2"}) == 2
    assert threads.requested_numba_threads({"LEAKY_NUMBA_THREADS": "AUTO"}) is None
    assert threads.requested_numba_threads({"NUMBA_NUM_THREADS": "2"}) is None
    with pytest.warns(RuntimeWarning, match="got '-1'"):
        assert threads.requested_numba_threads({"LEAKY_NUMBA_THREADS": "-1"}) == 1
