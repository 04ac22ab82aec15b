"""Tangent step: one greedy environment step of the network carrying k activity tangents per row.

A forward-mode derivative (a JVP) of the action with respect to every neuron's activity at its
decision step, computed with the same weights as the step itself: no backward pass. For every
batch row b, from the carried voltages ``V0[b]`` and the encoded sensor input ``u[b]`` (clamp:
``V[I] = u``; pulse: ``V[I] += u``, once), τ = 0 … ℓ-1, for every neuron n with τ ≤ last[n]::

    z = V Kᵀ + bias,  y = Θ(z) = s·z,  α = σ(y),  V ← (1-λ)⊙V + λ⊙α        the primal (ξ = 0)
    ż = V̇ Kᵀ,  ẏ = s·ż − κ s² z · mean_{j∉I}(sign(z_j) ż_j)  (divisive; ẏ = ż without)
    α̇ = σ'(y)·ẏ + T[j, b, n]·1[τ = tau[n], n ∉ I],   V̇ ← (1-λ)⊙V̇ + λ⊙α̇         each tangent j

with ``V̇ = 0`` at τ = 0 and the sensors re-clamped (clamp: ``V[I] = u``, ``V̇[I] = 0``). A
neuron past its last step holds its voltage and tangents, and its ``z``, ``y`` are 0 there.

Why ``last``: what learning reads of one step is the action ``V_ℓ[O]`` and, for every neuron n,
``y_{tau[n]}[n]`` and the voltages ``V_{tau[n]}`` of its presynaptic neurons. With the decision
steps ``tau[n] = max(0, ℓ-1-d_n)`` (``d_n`` hops to the outputs) a presynaptic neuron m of n has
``d_m ≤ d_n + 1``, so ``tau[m] ≥ tau[n] − 1``: computing each neuron only up to its own decision
step (``last = tau``) leaves everything learning reads exact and skips the rest. A layered
network then costs one pass of its MLP instead of ℓ passes of the whole mask. Divisive inhibition
couples every neuron of a row through the mean, so there the caller passes ``last = ℓ-1``
(every neuron at every step; the tests hold that this equals the fused step exactly).

The tangents are standard normal inputs (the caller draws them), so ``E[(g·ȧ) T_n]`` is the
sensitivity ``g·∂a/∂α_n`` of a scalar of the action to neuron n's activity at its decision step:
the activity-perturbation (forward-gradient) estimate of ``kernels/credit``.

Shapes: V0 (B, N), u (B, n_in), T (k, B, N); K (N, N) masked, bias, leak (N,); tau, last,
col_lo, col_hi (N,) int32. Outputs: Vc (ℓ+1, B, N) voltages before every internal step and
after the last, z, y (ℓ, B, N), scale (ℓ, B) the divisive factor s (1 without inhibition),
Vdot (k, B, N) the tangents of the voltages after the last step.

Cost per call: ``(1 + k)·B·Σ_τ Σ_{n: τ ≤ last_n} (col_hi_n − col_lo_n)`` multiply-adds (dense,
``last = ℓ−1``: ``(1+k)·ℓ·B·N²``). Bytes: K once from DRAM, then from cache; Vc, z, y written once;
T read once and Vdot written once.

Faces, one signature ``tangent_step_<face>(V0, u, T, net, flags, out)`` (boundary.py):
``tangent_step_reference`` (reference.py: NumPy float64, the definition), ``tangent_step_cpu``
(cpu.py: numba.njit, the register tiles of kernels/tiles.py over the primal and the tangents)
and ``tangent_step_cuda`` (cuda.py: one launch for all ℓ steps); docs/kernels.md describes them.
"""

from leaky.kernels.tangent.boundary import (TangentFlags, TangentNet, TangentOut, check_inputs, check_last,
                                            decision_last)
from leaky.kernels.tangent.cpu import first_injection, last_is_valid, tangent_schedule, tangent_step_cpu, tangent_work
from leaky.kernels.tangent.cuda import CUDA_KERNELS, rows_per_block, tangent_step_cuda, tangent_step_launch
from leaky.kernels.tangent.reference import tangent_step_reference

FACES = {"numpy": tangent_step_reference, "cpu": tangent_step_cpu, "cuda": tangent_step_cuda}
"""The face each backend runs (:mod:`leaky.core.backend` names)."""

__all__ = ["CUDA_KERNELS", "FACES", "TangentFlags", "TangentNet", "TangentOut", "check_inputs",
           "check_last", "decision_last", "first_injection", "last_is_valid", "rows_per_block",
           "tangent_schedule", "tangent_step_cpu", "tangent_step_cuda", "tangent_step_launch",
           "tangent_step_reference", "tangent_work"]
