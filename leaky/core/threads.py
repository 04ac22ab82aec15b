"""How many threads NumPy's BLAS runs inside leaky: decided once, when ``leaky`` is imported.

leaky's own kernels run on Numba's threads; NumPy's BLAS (OpenBLAS, MKL, BLIS) serves the
learners written on the array module (DDPG's critic and BPTT, node perturbation, the shared
value). Their GEMMs are small (a 256-row minibatch through a 400-300 critic), and a BLAS thread
pool as large as the machine spends more time waking and joining its threads than computing:
``leaky train --learner ddpg`` took 35.6 s on 2 cores with OpenBLAS's default pool against 3.8 s
with one thread (9.3×; 5–19× in other runs), and worse next to Numba's own threads or other
processes. So importing leaky limits BLAS to **one thread**, with ``threadpoolctl`` (which
talks to whichever BLAS NumPy loaded, also after NumPy has started its pool).

A user decides otherwise with one environment variable, read at import:

``LEAKY_BLAS_THREADS=N``     N BLAS threads (an int >= 1)
``LEAKY_BLAS_THREADS=auto``  leave BLAS alone (its own default or the user's own settings)

and, without ``LEAKY_BLAS_THREADS``, a BLAS variable the user set themselves
(``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``BLIS_NUM_THREADS``, ``OMP_NUM_THREADS``) is
respected too. From Python, :func:`set_blas_threads` changes it at any time (the sweep's worker
processes inherit the parent's setting, since each imports leaky). ``leaky bench`` runs BLAS on
as many threads as Numba, so the SGEMM ceilings it measures match the kernels' threads.
"""

from __future__ import annotations

import os
import warnings

ENV = "LEAKY_BLAS_THREADS"
USER_BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "OMP_NUM_THREADS")
DEFAULT = 1


def requested_threads(environ=None) -> int | None:
    """The BLAS thread count leaky applies at import, from ``environ`` (default ``os.environ``).

    Returns
    -------
    int or None
        ``None`` to leave BLAS alone (``LEAKY_BLAS_THREADS=auto``, or a user's own BLAS
        variable without ``LEAKY_BLAS_THREADS``), else the thread count.
    """
    return _requested(environ, ENV, USER_BLAS_VARIABLES, DEFAULT)


def _requested(environ, name: str, user_variables: tuple, default: int) -> int | None:
    """The count ``environ[name]`` asks for: ``default`` when unset (``None`` when one of the
    library's own ``user_variables`` is set), ``None`` for ``auto``, and ``default`` with a
    warning for anything but an int >= 1."""
    environ = os.environ if environ is None else environ
    value = environ.get(name, "").strip()
    if not value:
        return None if any(environ.get(v, "").strip() for v in user_variables) else default
    if value.lower() == "auto":
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        warnings.warn(f"{name}: got {value!r}, expected an int >= 1 or 'auto'; using {default}",
                      RuntimeWarning, stacklevel=3)
        return default
    return threads


def user_chose(environ=None) -> bool:
    """Whether ``environ`` sets ``LEAKY_BLAS_THREADS`` or one of the BLAS libraries' variables."""
    environ = os.environ if environ is None else environ
    return any(environ.get(v, "").strip() for v in (ENV, *USER_BLAS_VARIABLES))


def set_blas_threads(threads: int | None) -> None:
    """Limit every BLAS library NumPy loaded to ``threads`` threads (``None``: leave it alone).

    Parameters
    ----------
    threads : int or None
        Threads per BLAS call, >= 1.
    """
    if threads is None:
        return
    from leaky.core.errors import ConfigError

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"set_blas_threads: got {threads!r}, expected an int >= 1 or None")
    import numpy  # noqa: F401  (loads the BLAS whose pool is limited)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def blas_threads() -> int | None:
    """The thread count of NumPy's BLAS now (the largest, if several are loaded; None if none)."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    counts = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(counts) if counts else None


# -- Numba's threads ------------------------------------------------------------------------
#
# The cpu faces' parallel schedules (kernels/step.py, tangent.py, credit.py, update_*.py) are
# the other thread pool. On a machine with other work running, a parallel region waits for a
# descheduled thread's next time slice: measured on 2 cores (docs/benchmarks.md, "Two threads"),
# a shape that took 41.6 µs serial took 8.00 ms on the `rows` schedule, and the main job's
# shared-critic update took 37 ms per update with Numba's default two threads against 4.7 ms
# on one (docs/results.md), while the best parallel gain seen when the cores were idle was 1.9×. So leaky
# runs its kernels on one Numba thread unless the user says otherwise:
#
#   LEAKY_NUMBA_THREADS=N      N threads (at most Numba's NUMBA_NUM_THREADS, the machine's cores)
#   LEAKY_NUMBA_THREADS=auto   leave Numba alone (its default: every core)
#
# and, without LEAKY_NUMBA_THREADS, a NUMBA_NUM_THREADS the user set is respected. Numba's
# thread count is per calling thread: it is set for the thread that imports leaky (the main
# thread of a training run or of each sweep worker); numba.set_num_threads changes it later.

NUMBA_ENV = "LEAKY_NUMBA_THREADS"
USER_NUMBA_VARIABLES = ("NUMBA_NUM_THREADS",)
NUMBA_DEFAULT = 1


def requested_numba_threads(environ=None) -> int | None:
    """The Numba thread count leaky applies at import, from ``environ`` (default
    ``os.environ``): ``None`` to leave Numba alone, else the count (1 by default)."""
    return _requested(environ, NUMBA_ENV, USER_NUMBA_VARIABLES, NUMBA_DEFAULT)


def set_numba_threads(threads: int | None) -> None:
    """Run leaky's Numba kernels on ``threads`` threads (``None``: leave Numba alone); more than
    Numba's pool (``numba.config.NUMBA_NUM_THREADS``) is clipped to it."""
    if threads is None:
        return
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def configure() -> None:
    """What ``import leaky`` does: :func:`set_blas_threads` of :func:`requested_threads` and
    :func:`set_numba_threads` of :func:`requested_numba_threads`."""
    set_blas_threads(requested_threads())
    set_numba_threads(requested_numba_threads())
