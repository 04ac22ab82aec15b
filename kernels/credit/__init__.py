"""Credit update: every neuron's estimate of its own effect on the critic, its row gradient and
its Adam step, in one call. No backpropagation through the network.

A shared critic ``Q(s, a)`` broadcasts ``g = ∂Q/∂a`` per sample (d_act numbers, a vector
dopamine). Each agent neuron n turns it into ``e[b, n] ≈ ∂Q/∂α_n``, the sensitivity of the critic
to its activity at its decision step ``t = tau[n]``, by one of three rules::

    perturb   e[b, n] = (1/k) Σ_j (g[b]·ȧ[j, b]) T[j, b, n]        activity tangents T, carried to
                                                                   the action by kernels/tangent
    feedback  F[n] ← (1−β) F[n] + β (1/(k·B)) Σ_{j,b} ȧ[j, b] T[j, b, n]    F[n] → E[∂a/∂α_n]
              e[b, n] = g[b]·F[n]                                  (with the updated F)
    dfa       e[b, n] = g[b]·F[n]                                  F fixed (random feedback)

An output neuron o (the last n_out) knows its own effect on the action exactly and uses it under
every rule: ``e[b, o] = g[b, o]·dadv[b, o]``, ``dadv = ∂a_o/∂α_o`` (decoder gain × clip × λ_o).
Then, with the divisive factor ``s`` of the row (1 without inhibition; its off-diagonal coupling
is dropped)::

    gz[b, n] = e[b, n] σ'(y[t, b, n]) s[t, b]
    G[n, m]  = (1/B) Σ_b gz[b, n] Vc[t, b, m] M[n, m]          G_b[n] = (1/B) Σ_b gz[b, n]

``G`` ascends ``mean_b Q``: for a layered network it is an estimate of the BPTT gradient
``∂/∂K mean_b Q(s_b, μ(s_b))`` (exact in expectation under perturb). If ``apply``, every row
then takes one Adam step on the loss ``−mean Q`` (bias corrections folded in: kernels/scalar.py's Adam)::

    m ← β₁m + (1−β₁)(−G),  v ← β₂v + (1−β₂)G²,  K[n, m] −= step_size·m / (√v + eps_hat)

for every m with ``M[n, m] ≠ 0``, and ``bias[n]`` likewise. Each neuron reads and writes only its
own row of K, its moments and its row of F: no atomics, no communication between neurons. Sensor
rows are never written (their G rows are 0).

Shapes: Vc (ℓ+1, B, N), y (ℓ, B, N), scale (ℓ, B), T (k, B, N), adot (k, B, n_out), g and dadv
(B, n_out); tau, col_lo, col_hi (N,) int32; mask, K, mK, vK, G (N, N); bias, mb, vb, Gb (N,);
F (N, n_out).

Cost per call: ``B·Σ_n (col_hi_n − col_lo_n)`` multiply-adds for G (``B·N²`` dense) plus
``k·B·N·n_out`` for the rules. Bytes: the voltage slice a neuron reads (shared by all neurons
through the cache), K and its moments read and written once.

Faces, one signature ``credit_update_<face>(batch, params, top, sc, out)`` (boundary.py):
``credit_update_reference`` (reference.py: NumPy float64, the definition; beside it
``credit_update_composed``, the same update from library calls, what the faces are benchmarked
against), ``credit_update_cpu`` (cpu.py: numba.njit, tiles of neurons sharing a decision step)
and ``credit_update_cuda`` (cuda.py: one launch, a block per neuron); docs/kernels.md describes
them.
"""

from leaky.kernels.credit.boundary import (RULES, CreditBatch, CreditGrads, CreditParams, CreditScalars,
                                           check_inputs, tau_is_valid)
from leaky.kernels.credit.cpu import credit_tiles, credit_update_cpu, credit_work
from leaky.kernels.credit.cuda import CUDA_KERNELS, credit_update_cuda, credit_update_launch
from leaky.kernels.credit.reference import credit_update_composed, credit_update_reference
from leaky.kernels.data import Topology

FACES = {"numpy": credit_update_reference, "cpu": credit_update_cpu, "cuda": credit_update_cuda}
"""The face each backend runs (:mod:`leaky.core.backend` names)."""

__all__ = ["CUDA_KERNELS", "FACES", "RULES", "CreditBatch", "CreditGrads", "CreditParams",
           "CreditScalars", "Topology", "check_inputs", "credit_tiles", "credit_update_composed",
           "credit_update_cpu", "credit_update_cuda", "credit_update_launch", "credit_update_reference",
           "credit_work", "tau_is_valid"]
