"""The compilation building blocks of kernels/jit.py that fix how the cpu tiles round."""

import numpy as np
import pytest
from numba import carray, njit

from leaky.kernels.jit import FASTMATH, fmuladd, lane_sum, stack_empty


@njit(cache=False)
def _lane_sums(x, lanes_16):
    acc = carray(stack_empty(32, x), (2, 16))
    for r in range(2):
        for l in range(16):
            acc[r, l] = x[r, l]
    if lanes_16:
        return lane_sum(acc, 0, 16), lane_sum(acc, 1, 16)
    return lane_sum(acc, 0, 8), lane_sum(acc, 1, 8)


def _pairwise(v):
    """lane l + lane l + n/2, down to one lane, in the array's float type."""
    while v.size > 1:
        v = v[: v.size // 2] + v[v.size // 2:]
    return v[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_sum_adds_the_lanes_pairwise_in_a_fixed_order(dtype):
    rng = np.random.default_rng(7)
    # magnitudes over eight decades: another order (sequential, or a different tree) rounds
    # differently on almost every row
    x = (rng.standard_normal((2, 16)) * 10.0 ** rng.integers(-4, 4, (2, 16))).astype(dtype)
    got16 = _lane_sums(x, True)
    got8 = _lane_sums(x, False)
    for r in range(2):
        assert got16[r] == _pairwise(x[r, :16])
        assert got8[r] == _pairwise(x[r, :8])
    sequential = [dtype(0)] * 2
    for r in range(2):
        for v in x[r]:
            sequential[r] = dtype(sequential[r] + v)
    assert list(got16) != sequential   # the data tell the orders apart


@njit(cache=False)
def _fma(a, b, c):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = fmuladd(a[i], b[i], c[i])
    return out


def test_fmuladd_rounds_once_or_as_a_multiply_and_an_add():
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    got = _fma(a, b, c)
    exact = a.astype(np.float64) * b + c          # exact product, one float64 rounding
    fused = exact.astype(np.float32)              # (within float32's rounding of it)
    unfused = (a * b) + c
    assert np.all((got == fused) | (got == unfused))
    assert got.dtype == np.float32


def test_the_cpu_faces_use_no_value_changing_fastmath_flag():
    """reassoc, contract, arcp, afn (or 'fast', all of them) let LLVM round a kernel differently
    wherever it optimises it again: docs/kernels.md, "Compiled once, the same everywhere"."""
    assert not set(FASTMATH) & {"fast", "reassoc", "contract", "arcp", "afn"}
