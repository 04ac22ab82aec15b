"""The credit update's cuda face: ``numba.cuda.jit``, one launch, one block per neuron
(kernels/credit/__init__.py has the math)."""

from __future__ import annotations

import numpy as np
from numba import float32

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.credit.boundary import (CreditBatch, CreditGrads, CreditParams, CreditScalars, check_inputs,
                                           tau_is_valid)
from leaky.kernels.data import Topology
from leaky.kernels.jit import cuda_device, cuda_jit
from leaky.kernels.scalar import activate_grad_cuda, adam_step_cuda
from leaky.kernels.spec import F1, F2, F3, I1, KernelSpec, Launch, cuda_kernels, run

#
# Block n owns neuron n's rows of K, G, F and the moments, and its bias: no other block touches
# them, so __syncthreads() is the only synchronisation (no atomics). Sensor blocks write their
# zero rows and return. Otherwise:
#   1. feedback (hidden n): per output p, Σ_{j,b} ȧ[j, b, p]·T[j, b, n] by a shared-memory tree
#      over the BLOCK threads; thread 0 steps F[n, p];
#   2. the row gradient, BLOCK columns at a time (coalesced along m): the batch in tiles of
#      BLOCK rows, each thread computing one row's gz = e·σ'(y)·s into shared memory (e by the
#      neuron's rule), then every thread sums gz·Vc[t, b, m] over the tile for its column;
#      columns outside col_lo…col_hi are written 0 without a sum. G = sum/B on the mask, and
#      the thread's Adam step of K[n, m] right after;
#   3. Gb = Σ gz / B by a tree (the first column pass accumulates it), thread 0 steps the bias.
# gz is recomputed for every column pass (⌈N / BLOCK⌉ of them): k·n_out multiply-adds per row,
# against BLOCK per row for the sums it feeds.

BLOCK = 128      # threads per block (a power of two: the tree sums)


def _gz_one(b, n, o, t, y, scale, T, adot, g, dadv, F, n_out, activation, rule, inv_k):
    """gz[b] of neuron n (``o`` ≥ 0: output o) by the neuron's rule."""
    k = T.shape[0]
    e = float32(0.0)
    if o >= 0:
        e = g[b, o] * dadv[b, o]
    elif rule == 0:
        for j in range(k):
            d = float32(0.0)
            for p in range(n_out):
                d += g[b, p] * adot[j, b, p]
            e += d * T[j, b, n]
        e *= inv_k
    else:
        for p in range(n_out):
            e += g[b, p] * F[n, p]
    return e * activate_grad_cuda(y[t, b, n], activation) * scale[t, b]


_gz_one_cuda = cuda_device(_gz_one)


def _tree_sum(red, tid):
    """Σ red[0:BLOCK] into red[0] (every thread calls it; red[tid] written before)."""
    cuda.syncthreads()
    half = BLOCK // 2
    while half > 0:
        if tid < half:
            red[tid] += red[tid + half]
        cuda.syncthreads()
        half //= 2


_tree_sum_cuda = cuda_device(_tree_sum)


@cuda_jit
def _credit_kernel(Vc, y, scale, T, adot, g, dadv, K, bias, F, mK, vK, mb, vb, tau, mask, col_lo,
                   col_hi, n_inputs, activation, rule, feedback_rate, step_size, eps_hat, beta1,
                   beta2, apply, G, Gb):
    red = cuda.shared.array(BLOCK, float32)
    gzs = cuda.shared.array(BLOCK, float32)
    tid = cuda.threadIdx.x
    n = cuda.blockIdx.x
    k = T.shape[0]
    B = T.shape[1]
    N = T.shape[2]
    n_out = g.shape[1]
    if n < n_inputs:                          # sensors: zero rows, nothing stepped
        for m in range(tid, N, BLOCK):
            G[n, m] = float32(0.0)
        if tid == 0:
            Gb[n] = float32(0.0)
        return
    o = n - (N - n_out)
    inv_b = float32(1.0) / float32(B)
    inv_k = float32(1.0) / float32(k) if k > 0 else float32(0.0)
    if o < 0 and rule == 1:                   # 1. feedback: the F row before its e
        for p in range(n_out):
            part = float32(0.0)
            for q in range(tid, k * B, BLOCK):
                j = q // B
                b = q - j * B
                part += adot[j, b, p] * T[j, b, n]
            red[tid] = part
            _tree_sum_cuda(red, tid)
            if tid == 0:
                F[n, p] = (float32(1.0) - feedback_rate) * F[n, p] + feedback_rate * (
                    red[0] / float32(k * B))
            cuda.syncthreads()
    t = tau[n]
    lo = col_lo[n]
    hi = col_hi[n]
    gsum = float32(0.0)
    for m0 in range(0, N, BLOCK):            # 2. the row gradient, BLOCK columns at a time
        m = m0 + tid
        inside = m >= lo and m < hi
        acc = float32(0.0)
        for b0 in range(0, B, BLOCK):
            b = b0 + tid
            gz = float32(0.0)
            if b < B:
                gz = _gz_one_cuda(b, n, o, t, y, scale, T, adot, g, dadv, F, n_out, activation,
                                  rule, inv_k)
                if m0 == 0:
                    gsum += gz
            gzs[tid] = gz
            cuda.syncthreads()
            if inside:
                for bb in range(min(BLOCK, B - b0)):
                    acc += gzs[bb] * Vc[t, b0 + bb, m]
            cuda.syncthreads()
        if m < N:
            on = inside and mask[n, m] != 0
            grad = acc * inv_b if on else float32(0.0)
            G[n, m] = grad
            if apply and on:
                mm, vv, d = adam_step_cuda(mK[n, m], vK[n, m], -grad, beta1, float32(1.0) - beta1,
                                           beta2, float32(1.0) - beta2, step_size, eps_hat)
                mK[n, m] = mm
                vK[n, m] = vv
                K[n, m] -= d
    red[tid] = gsum                           # 3. Gb and the bias
    _tree_sum_cuda(red, tid)
    if tid == 0:
        gb = red[0] * inv_b
        Gb[n] = gb
        if apply:
            mm, vv, d = adam_step_cuda(mb[n], vb[n], -gb, beta1, float32(1.0) - beta1, beta2,
                                       float32(1.0) - beta2, step_size, eps_hat)
            mb[n] = mm
            vb[n] = vv
            bias[n] -= d


CREDIT_SPEC = KernelSpec(_credit_kernel, (
    ("Vc", F3), ("y", F3), ("scale", F2), ("T", F3), ("adot", F3), ("g", F2), ("dadv", F2), ("K", F2),
    ("bias", F1), ("F", F2), ("mK", F2), ("vK", F2), ("mb", F1), ("vb", F1), ("tau", I1), ("mask", F2),
    ("col_lo", I1), ("col_hi", I1), ("n_inputs", "int32"), ("activation", "int32"), ("rule", "int32"),
    ("feedback_rate", "float32"), ("step_size", "float32"), ("eps_hat", "float32"), ("beta1", "float32"),
    ("beta2", "float32"), ("apply", "boolean"), ("G", F2), ("Gb", F1)))


def credit_update_launch(batch: CreditBatch, params: CreditParams, top: Topology, sc: CreditScalars,
                         out: CreditGrads) -> Launch:
    """The launch of the credit update: N blocks of BLOCK threads."""
    N = batch.T.shape[2]
    return CREDIT_SPEC.launch((N,), (BLOCK,), {**batch._asdict(), **params._asdict(), **top._asdict(),
                                                **sc._asdict(), **out._asdict()})


def credit_update_cuda(batch: CreditBatch, params: CreditParams, top: Topology, sc: CreditScalars,
                       out: CreditGrads, *, stream=0) -> CreditGrads:
    """The credit update on the GPU (CuPy arrays; NumPy arrays in the simulator), float32, one
    launch of N blocks of BLOCK threads. The decision steps are checked against ℓ only for
    host (NumPy) arrays (reading device arrays back would synchronise every call)."""
    check_inputs(batch, params, top, sc, out)
    ell = batch.Vc.shape[0] - 1
    if isinstance(top.tau, np.ndarray) and not tau_is_valid(top.tau, ell):
        raise ValueError(f"credit update: decision steps tau in [{int(np.min(top.tau))}, "
                         f"{int(np.max(top.tau))}], expected 0 <= tau < ell = {ell}")
    run(credit_update_launch(batch, params, top, sc, out), stream)
    return out


CUDA_KERNELS = cuda_kernels(CREDIT_SPEC)
