"""Fused internal steps of a leaky recurrent network (one environment step).

For every batch row b, starting from the carried voltages ``V0[b]`` and the encoded sensor
input ``u[b]`` (clamp: ``V[I] = u``; pulse: ``V[I] += u``, once), ℓ times, τ = 0 … ℓ-1::

    z = V Kᵀ + b                    pre-activation (K is stored masked: K ⊙ (1 - M) = 0)
    y = Θ(z)                        inhibition: none, or divisive  z / (1 + κ·mean_{n∉I}|z_n|)
    α = σ(y) + ξ[τ]                 action of every neuron (ξ = 0 on sensors: they are not agents)
    V ← (1 - λ) ⊙ V + λ ⊙ α         leak; then sensors re-clamped (clamp mode)

Outputs, the cache that learning reads: ``Vc (ℓ+1, B, N)`` the voltages before every internal
step and after the last, ``z, y, alpha (ℓ, B, N)``.

Shapes: V0 (B, N), u (B, n_in), xi (ℓ, B, N); the network (:class:`StepNet`): K (N, N),
bias (N,), leak (N,), col_lo/col_hi (N,) the half-open range of presynaptic columns that can be
non-zero in each row of K (the whole row for a dense network, the previous layer for a layered
one; the reference ignores it, so the tests prove the skip is exact).

Cost per call: ℓ·B·Σ_n (col_hi_n - col_lo_n) multiply-adds (ℓ·B·N² dense). Bytes: K once per
call from DRAM (then from cache), V0/u/xi read and the cache (3ℓ+1)·B·N written once.

Faces, one signature ``step_<face>(V0, u, xi, net, flags, out)`` (kernels/step/boundary.py):
``step_reference`` (reference.py: NumPy, float64, the definition; ``step_composed`` beside it,
the same step from GEMMs and elementwise calls, what the faces are benchmarked against),
``step_cpu`` (cpu.py: numba.njit, register-tiled) and ``step_cuda`` (cuda.py: one launch;
``step_launch`` is that launch for a captured program). docs/kernels.md describes them.
"""

from leaky.kernels.step.boundary import StepFlags, StepNet, StepOut
from leaky.kernels.step.cpu import PARALLEL_MIN_WORK, SCHEDULES, cpu_schedule, presynaptic_count, step_cpu
from leaky.kernels.step.cuda import CUDA_KERNELS, TILE_B, TILE_N, step_cuda, step_launch, tile_ranges
from leaky.kernels.step.reference import step_composed, step_reference

FACES = {"numpy": step_reference, "cpu": step_cpu, "cuda": step_cuda}
"""The face each backend runs (:mod:`leaky.core.backend` names)."""

__all__ = ["CUDA_KERNELS", "FACES", "PARALLEL_MIN_WORK", "SCHEDULES", "StepFlags", "StepNet",
           "StepOut", "TILE_B", "TILE_N", "cpu_schedule", "presynaptic_count", "step_composed",
           "step_cpu", "step_cuda", "step_launch", "step_reference", "tile_ranges"]
