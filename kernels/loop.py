"""The small kernels that join the step and the update into a fixed per-environment-step program.

An environment step of the local learner on the GPU is, with every array preallocated
(:mod:`leaky.learners.graph` builds and captures it)::

    act:    _prepare_kernel      noise ξ (counter-based, kernels/noise.py) and encoded sensors u
            _step_kernel         ℓ internal steps (kernels/step)
            _decode_kernel       action = δ(V[:, O]); advances the noise counter
    learn:  _transitions_kernel  the transitions of the previous step (kernels/update_local/'s
                                 ``build_transitions``, truncated rows bootstrapped); advances
                                 the Adam step and writes its bias-corrected scalars
            _update_kernel       every critic, row of K and bias (kernels/update_local/)

Everything a replay must change between steps (the noise counter, the Adam step) lives in
device memory and is advanced by a kernel, so one captured graph serves every step.
"""

import math

import numpy as np

try:
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.noise import fill_normal_span_cuda
from leaky.kernels.jit import cuda_jit
from leaky.kernels.scalar import bias_corrected_cuda
from leaky.kernels.spec import F1, F2, F3, L1, KernelSpec, Launch, cuda_kernels

THREADS = 256


def grid_for(work: int, threads: int = THREADS, max_blocks: int = 1024) -> tuple[int, int]:
    """``(blocks, threads)`` of a grid-stride launch over ``work`` elements (at least one block;
    fewer threads for tiny work, which also keeps the CUDA simulator's thread count down)."""
    threads = min(threads, max(32, 32 * math.ceil(work / 32)))
    return max(1, min(max_blocks, math.ceil(work / threads))), threads


@cuda_jit
def _prepare_kernel(seed, stream, counter, std, xi, obs, scale, shift, u):
    """``xi.flat[i] = std[i % N] · normal(seed, stream, counter[0], i)``; ``u = obs·scale + shift``."""
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    fill_normal_span_cuda(seed, stream, counter, std, xi, start, step)
    n_in = obs.shape[1]
    for i in range(start, obs.shape[0] * n_in, step):
        b = i // n_in
        k = i - b * n_in
        u[b, k] = obs[b, k] * scale[k] + shift[k]


@cuda_jit
def _decode_kernel(V_last, half, mid, action, counter):
    """``action = clip(V_last[:, N-n_out:], -1, 1)·half + mid``; thread 0 advances the counter."""
    B = action.shape[0]
    n_out = action.shape[1]
    N = V_last.shape[1]
    start = cuda.grid(1)
    for i in range(start, B * n_out, cuda.gridsize(1)):
        b = i // n_out
        j = i - b * n_out
        v = V_last[b, N - n_out + j]
        v = min(max(v, -1.0), 1.0)
        action[b, j] = v * half[j] + mid[j]
    if start == 0:
        counter[0] += 1


@cuda_jit
def _transitions_kernel(V_t, y_t, V_next, y_next, V_boot, y_boot, reward, terminated, boot_rows,
                        gamma_slice, reward_scale, causal, adam_step, sched, optimizer, lr_critic,
                        beta1, beta2, eps, Vn, yn, r_out, cont_out):
    """The update's next-state arrays and rewards from two steps' caches (and the bootstrap
    cache of truncated rows), as ``build_transitions`` with ``_merge_rows``; thread 0 advances
    the Adam step and writes ``sched = (step_size, eps_hat)`` (``UpdateConfig.adam_scalars``).

    ``causal``: slice τ → ``V_next[τ]``, reward r, discount γ·(1 − terminated).
    internal: slice τ → ``V_t[τ+1]`` (τ < ℓ−1) or ``V_next[0]`` (τ = ℓ−1), reward r on the last
    slice only, discount ``gamma_slice`` = γ^(1/ℓ) (times 1 − terminated on the last slice).
    """
    ell = y_t.shape[0]
    B = y_t.shape[1]
    N = y_t.shape[2]
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, ell * B * N, step):
        tau = i // (B * N)
        rest = i - tau * (B * N)
        b = rest // N
        n = rest - b * N
        if not causal and tau < ell - 1:
            Vn[tau, b, n] = V_t[tau + 1, b, n]
            yn[tau, b, n] = y_t[tau + 1, b, n]
        else:
            src = tau if causal else 0
            if boot_rows[b] != 0:
                Vn[tau, b, n] = V_boot[src, b, n]
                yn[tau, b, n] = y_boot[src, b, n]
            else:
                Vn[tau, b, n] = V_next[src, b, n]
                yn[tau, b, n] = y_next[src, b, n]
    for i in range(start, ell * B, step):
        tau = i // B
        b = i - tau * B
        alive = 1.0 - terminated[b]
        if causal:
            r_out[tau, b] = reward_scale * reward[b]
            cont_out[tau, b] = gamma_slice * alive
        elif tau == ell - 1:
            r_out[tau, b] = reward_scale * reward[b]
            cont_out[tau, b] = gamma_slice * alive
        else:
            r_out[tau, b] = 0.0
            cont_out[tau, b] = gamma_slice
    if start == 0:
        t = adam_step[0] + 1
        adam_step[0] = t
        if optimizer == 0:
            sched[0] = lr_critic
            sched[1] = 0.0
        else:
            step_size, eps_hat = bias_corrected_cuda(lr_critic, float(t), float(beta1), float(beta2), eps)
            sched[0] = step_size
            sched[1] = eps_hat


PREPARE_SPEC = KernelSpec.typed(_prepare_kernel, ("uint32", "uint32", L1, F1, F1, F2, F1, F1, F2))
DECODE_SPEC = KernelSpec.typed(_decode_kernel, (F2, F1, F1, F2, L1))
TRANSITIONS_SPEC = KernelSpec.typed(_transitions_kernel, (
    F3, F3, F3, F3, F3, F3, F1, F1, F1, "float32", "float32", "boolean", L1, F1, "int32", "float64",
    "float64", "float64", "float64", F3, F3, F2, F2))


def prepare_launch(seed, stream, counter, std, xi, obs, scale, shift, u) -> Launch:
    """The launch of ``_prepare_kernel`` (``xi`` flattened by the caller or here)."""
    ell_b_n = xi.size
    return PREPARE_SPEC.launch(*grid_for(max(ell_b_n, u.size)), dict(
        seed=seed, stream=stream, counter=counter, std=std, xi=xi.reshape(-1), obs=obs, scale=scale,
        shift=shift, u=u))


def decode_launch(V_last, half, mid, action, counter) -> Launch:
    """The launch of ``_decode_kernel``."""
    return DECODE_SPEC.launch(*grid_for(action.size), dict(V_last=V_last, half=half, mid=mid,
                                                           action=action, counter=counter))


def transitions_launch(**values) -> Launch:
    """The launch of ``_transitions_kernel`` (arguments by name, as the kernel lists them)."""
    return TRANSITIONS_SPEC.launch(*grid_for(values["Vn"].size), values)


CUDA_KERNELS = cuda_kernels(PREPARE_SPEC, DECODE_SPEC, TRANSITIONS_SPEC)
