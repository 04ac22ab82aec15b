"""The tangent step's cuda face: ``numba.cuda.jit``, one launch runs all ℓ internal steps, primal
and tangents, for a few rows (kernels/tangent/__init__.py has the math)."""

from __future__ import annotations

import numpy as np
from numba import float32, int32

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.jit import cuda_jit
from leaky.kernels.scalar import activate_cuda, activate_grad_cuda
from leaky.kernels.spec import F1, F2, F3, I1, KernelSpec, Launch, cuda_kernels, run
from leaky.kernels.tangent.boundary import TangentFlags, TangentNet, TangentOut, check_inputs, check_last

#
# Block = 32 neurons (tx) × 8 stacked rows (ty), 256 threads; it owns ``rb`` batch rows for the
# whole call, so __syncthreads() is the only synchronisation (no grid sync, no atomics). Its
# stacked rows are the rb primal rows followed by the rb rows of each tangent, s = src·rb + i
# (src 0 the primal, 1 + j tangent j); rb = max(1, 8 // (1 + k)) fills a chunk of 8 stacked
# rows where k is small, and k ≥ 7 walks ⌈(1 + k)/8⌉ chunks of one batch row. Per step:
#   1. products: per 32-neuron tile with a live neuron (syncthreads_or), per chunk, the tile's
#      presynaptic range (tile_lo/tile_hi) in 32 × 32 tiles of K (padded to 33 columns: no bank
#      conflicts) and 8 × 32 tiles of the chunk's voltages in shared memory; raw sums to z[τ]
#      (primal) and out.work (tangents). Tangent chunks only after the first injection step;
#   2. the primal rows: Σ|z| by a shared-memory reduction (divisive), then bias, σ, leak and the
#      live selects, each thread its neurons;
#   3. each tangent chunk: Σ sign(z)·ż (divisive), then ẏ, α̇ (σ' recomputed from z), injection
#      at tau, leak, in place in Vdot (every product of the step is done by then).
# ceil(B / rb) blocks: B = 256, k = 1 gives 64 blocks (about half an H100 or H200).

TILE_N = 32          # neurons per tile (tx)
TILE_ROWS = 8        # stacked rows per chunk (ty)
KS_SHAPE = (TILE_N, TILE_N + 1)


@cuda_jit
def _tangent_kernel(V0, u, T, K, bias, leak, tau, last, tile_lo, tile_hi, n_inputs, activation,
                    inhibition, kappa, pulse, rb, Vc, z, y, scale, Vdot, work):
    Ks = cuda.shared.array(KS_SHAPE, float32)
    Xs = cuda.shared.array((TILE_ROWS, TILE_N), float32)
    red = cuda.shared.array((TILE_ROWS, TILE_N), float32)
    s_row = cuda.shared.array(TILE_ROWS, float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    k = T.shape[0]
    B = T.shape[1]
    N = T.shape[2]
    ell = z.shape[0]
    b0 = cuda.blockIdx.x * rb
    S = rb * (1 + k)                          # stacked rows of the block
    n_agents = float32(N - n_inputs)
    t0 = ell                                  # the first injection step: tangents are 0 to it
    for n in range(n_inputs, N):
        t0 = min(t0, tau[n])

    for c0 in range(0, S, TILE_ROWS):         # Vc[0] with the sensor input; tangents 0
        s = c0 + ty
        b = b0 + s % rb
        if s < S and b < B:
            src = s // rb
            for n in range(tx, N, TILE_N):
                if src == 0:
                    v = V0[b, n]
                    if n < n_inputs:
                        v = v + u[b, n] if pulse else u[b, n]
                    Vc[0, b, n] = v
                else:
                    Vdot[src - 1, b, n] = float32(0.0)
    cuda.syncthreads()

    for t in range(ell):
        rows = S if t > t0 else rb
        # 1. products
        for n0 in range(0, N, TILE_N):
            n = n0 + tx
            live = n < N and last[n] >= t
            if cuda.syncthreads_or(int32(1) if live else int32(0)):
                ti = n0 // TILE_N
                for c0 in range(0, rows, TILE_ROWS):
                    s = c0 + ty
                    b = b0 + s % rb
                    valid = s < rows and b < B
                    src = s // rb
                    acc = float32(0.0)
                    for m0 in range(tile_lo[ti], tile_hi[ti], TILE_N):
                        m = m0 + tx
                        for i in range(ty, TILE_N, TILE_ROWS):
                            Ks[i, tx] = K[n0 + i, m] if (n0 + i < N and m < N) else float32(0.0)
                        x = float32(0.0)
                        if valid and m < N:
                            x = Vc[t, b, m] if src == 0 else Vdot[src - 1, b, m]
                        Xs[ty, tx] = x
                        cuda.syncthreads()
                        for kk in range(TILE_N):
                            acc += Ks[tx, kk] * Xs[ty, kk]
                        cuda.syncthreads()
                    if valid and n < N:
                        if src == 0:
                            z[t, b, n] = acc
                        else:
                            work[src - 1, b, n] = acc
        cuda.syncthreads()
        # 2. the primal rows (all in the first chunk: rb ≤ 8)
        b = b0 + ty
        primal = ty < rb and b < B
        part = float32(0.0)
        if primal and inhibition == 1:
            for n in range(n_inputs + tx, N, TILE_N):
                part += abs(z[t, b, n] + bias[n])
        red[ty, tx] = part
        cuda.syncthreads()
        if tx == 0:
            sc = float32(1.0)
            if inhibition == 1:
                total = float32(0.0)
                for i in range(TILE_N):
                    total += red[ty, i]
                sc = float32(1.0) / (float32(1.0) + kappa * total / n_agents)
            s_row[ty] = sc
            if primal:
                scale[t, b] = sc
        cuda.syncthreads()
        if primal:
            sc = s_row[ty]
            for n in range(tx, N, TILE_N):
                if last[n] >= t:
                    zz = z[t, b, n] + bias[n]
                    yy = zz * sc
                    a = activate_cuda(yy, activation)
                    v = (float32(1.0) - leak[n]) * Vc[t, b, n] + leak[n] * a
                    if n < n_inputs and not pulse:
                        v = u[b, n]
                    Vc[t + 1, b, n] = v
                    z[t, b, n] = zz
                    y[t, b, n] = yy
                else:
                    Vc[t + 1, b, n] = Vc[t, b, n]
                    z[t, b, n] = float32(0.0)
                    y[t, b, n] = float32(0.0)
        cuda.syncthreads()
        # 3. the tangent rows, a chunk at a time
        tangents = t > t0
        for c0 in range(rb, S, TILE_ROWS):
            s = c0 + ty
            i = s % rb
            b = b0 + i
            valid = s < S and b < B
            j = s // rb - 1
            part = float32(0.0)
            if valid and tangents and inhibition == 1:
                for n in range(n_inputs + tx, N, TILE_N):
                    zz = z[t, b, n]
                    sg = float32(1.0) if zz > 0 else (float32(-1.0) if zz < 0 else float32(0.0))
                    part += sg * work[j, b, n]
            red[ty, tx] = part
            cuda.syncthreads()
            if valid:
                sc = s_row[i]
                c = float32(0.0)
                if inhibition == 1:
                    total = float32(0.0)
                    for q in range(TILE_N):
                        total += red[ty, q]
                    c = kappa * sc * sc * total / n_agents
                for n in range(tx, N, TILE_N):
                    if last[n] >= t:
                        if n < n_inputs and not pulse:
                            Vdot[j, b, n] = float32(0.0)
                        else:
                            zz = z[t, b, n]
                            zd = work[j, b, n] if tangents else float32(0.0)
                            ad = activate_grad_cuda(zz * sc, activation) * (sc * zd - c * zz)
                            if n >= n_inputs and tau[n] == t:
                                ad += T[j, b, n]
                            Vdot[j, b, n] = (float32(1.0) - leak[n]) * Vdot[j, b, n] + leak[n] * ad
            cuda.syncthreads()


def rows_per_block(k: int) -> int:
    """Batch rows a block of the cuda face owns: its 1 + k stacked rows fill chunks of 8."""
    return max(1, TILE_ROWS // (1 + k))


TANGENT_SPEC = KernelSpec(_tangent_kernel, (
    ("V0", F2), ("u", F2), ("T", F3), ("K", F2), ("bias", F1), ("leak", F1), ("tau", I1), ("last", I1),
    ("tile_lo", I1), ("tile_hi", I1), ("n_inputs", "int32"), ("activation", "int32"),
    ("inhibition", "int32"), ("kappa", "float32"), ("pulse", "boolean"), ("rb", "int32"),
    ("Vc", F3), ("z", F3), ("y", F3), ("scale", F2), ("Vdot", F3), ("work", F3)))


def tangent_step_launch(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut) -> Launch:
    """The launch of the tangent step (``ceil(B / rows_per_block(k))`` blocks of 32 × 8
    threads), after the checks of :func:`tangent_step_cuda`."""
    k, B, N = T.shape
    rb = rows_per_block(k)
    grid = (max(1, -(-B // rb)),)
    return TANGENT_SPEC.launch(grid, (TILE_N, TILE_ROWS), {
        "V0": V0, "u": u, "T": T, **net._asdict(), **flags._asdict(), "rb": rb, **out._asdict()})


def tangent_step_cuda(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut, *,
                      stream=0) -> TangentOut:
    """The tangent step on the GPU (CuPy arrays; NumPy arrays in the simulator), float32, one
    launch of ``ceil(B / rows_per_block(k))`` blocks of 32 × 8 threads.

    Needs ``net.tile_lo``/``net.tile_hi`` (``kernels.step.tile_ranges``) and ``out.work``.
    The values of tau/last are checked against ℓ only for host (NumPy) arrays: reading device
    arrays back would synchronise every call; :func:`decision_last` makes valid ones.
    """
    check_inputs(V0, u, T, net, flags, out)
    n_in, act, inhibition, kappa, pulse, ell = flags
    k, B, N = T.shape
    n_tiles = -(-N // TILE_N)
    for name in ("tile_lo", "tile_hi"):
        a = getattr(net, name)
        if a is None or tuple(a.shape) != (n_tiles,) or a.dtype != np.int32:
            raise ValueError(f"tangent step: {name} is {None if a is None else (a.dtype, tuple(a.shape))}, "
                             f"expected int32 of shape ({n_tiles},) (kernels.step.tile_ranges)")
    if isinstance(net.tau, np.ndarray) and isinstance(net.last, np.ndarray):
        check_last(net.tau, net.last, ell, inhibition)
    run(tangent_step_launch(V0, u, T, net, flags, out), stream)
    return out


CUDA_KERNELS = cuda_kernels(TANGENT_SPEC)
