"""Fused local update: every non-sensor neuron's critic, its row of K and its bias, in one call.

Every non-sensor neuron n is an agent (docs/design.md#3-every-neuron-is-an-agent). From a batch of
transitions it takes one
critic step, then one actor step with the updated critic, then a soft target update::

    x = f_n ⊙ V[t, b]        critic features: f_n = 1 (view "all") or the mask row (M[n] ≠ 0)
    μ = σ(y[t, b, n]),  d = α[t, b, n] − μ                           the centred action

    advantage   Q_n(x, α) = w·x + c + d (u + p·x) + ½ h d²,   h ≤ 0
                δ = r + cont·(w̄·x' + c̄) − Q_n(x, α)             (action terms vanish at α = μ(x'))
    linear      Q_n(x, α) = w·x + u α + c
                δ = r + cont·(w̄·x' + ū σ(y'[t, b, n]) + c̄) − Q_n(x, α)
    dopamine    the caller's shared TD error δ[t, b] replaces the neuron's own w, c:
                residual e = δ − A,  A = d (u + p·x) + ½ h d²  (advantage)  or  A = u d  (linear)

    critic      θ ← θ + lr_critic · mean[e ∂Q/∂θ]    (e = δ, or the residual; SGD, or Adam on
                                                    the loss gradient g = −mean[e ∂Q/∂θ]);
                h ← min(h, 0)
    actor       g = ∂Q_n/∂α at α = μ:  u + p·x (advantage, updated u, p)  or  u (linear)
                K[n, m] += lr_actor · mean[g σ'(y_n) V[t, b, m]]   for every m with M[n, m] ≠ 0
                b_n     += lr_actor · mean[g σ'(y_n)]
    target      θ̄ ← (1 − τ_soft) θ̄ + τ_soft θ

The means run over the batch b and the neuron's slices t: ``t = tau[n]`` only (``causal`` clock:
the neuron's decision step) or every t (``internal`` clock: pass ``tau[n] = -1``).

Critic parameters are packed, one row per neuron (``critic_layout``): ``theta (N, 2N+3)`` =
``[w (N) | p (N) | c | u | h]``; the target ``theta_bar`` and the Adam moments have the same
layout. A parameter the configuration does not train (p and h of ``linear``; w and c under
``dopamine``; w and p entries outside a ``presynaptic`` view) is never written in ``theta``,
``adam_m`` or ``adam_v``; the soft update covers the family's parameters inside the view (so
under ``dopamine`` θ̄'s w and c still relax towards θ's, harmlessly).

Shapes (the fields of the named tuples the faces take): ``tr.V, y, alpha, V_next, y_next``
(T, B, N); ``tr.reward, cont, delta`` (T, B); ``top.tau`` (N,) int32, ``top.mask`` (N, N),
``top.col_lo, col_hi`` (N,) int32; ``actor.K`` (N, N), ``actor.bias`` (N,); ``critic.theta,
theta_bar, adam_m, adam_v`` (N, 2N+3); ``out.diag`` (N, 3) written: mean e, mean |e|, mean slope
g per neuron (zeros on sensors).

Cost per call (view ``all``, advantage, own critic): about ``7·S·N²`` multiply-adds, ``S`` the
transitions per neuron (``B`` causal, ``T·B`` internal): three dot products per transition in the
critic, two gradient rows, the slope and the row of K. Bytes: the voltage slices a neuron reads
(``2·S·N`` floats, shared by all neurons through the cache), the parameter rows read and written
once.

Faces, one signature ``update_local_<face>(tr, top, actor, critic, sc, out)``
(boundary.py: the ``kernels.data`` tuples and :class:`LocalScalars`): ``update_local_reference``
(reference.py, NumPy float64, the definition; ``update_local_composed`` beside it, the same
update from whole-array NumPy calls, what the faces are benchmarked against),
``update_local_cpu`` (cpu.py, numba.njit, tiles of up to 32 neurons; ``out.work`` a
``cpu_workspace``) and ``update_local_cuda`` (cuda.py, one launch of one block per neuron;
``update_local_launch`` is that launch for a captured program). residual.py holds the scalar
math the compiled faces share; boundary.py the option codes, the critic layout and the
learner-side helpers (record slices, critic values).
"""

from __future__ import annotations

from leaky.kernels.update_local.boundary import (BASELINES, CLOCKS, FAMILIES, OPTIMIZERS, VIEWS, ActorRows,
                                                 CriticLayout, CriticState, LocalScalars, Topology, Transitions,
                                                 UpdateOut, critic_layout, critic_values, record_slices)
from leaky.kernels.update_local.cpu import PARALLEL_MIN_WORK, TILE_CPU, cpu_workspace, update_local_cpu
from leaky.kernels.update_local.cuda import (BLOCK, CUDA_KERNELS, UPDATE_SPEC, cuda_workspace, update_local_cuda,
                                             update_local_launch)
from leaky.kernels.update_local.reference import update_local_composed, update_local_reference

FACES = {"numpy": update_local_reference, "cpu": update_local_cpu, "cuda": update_local_cuda}
"""The face each backend runs (:mod:`leaky.core.backend` names)."""

__all__ = ["ActorRows", "BASELINES", "BLOCK", "CLOCKS", "CUDA_KERNELS", "CriticLayout", "CriticState", "FACES",
           "FAMILIES", "LocalScalars", "OPTIMIZERS", "PARALLEL_MIN_WORK", "TILE_CPU", "Topology", "Transitions",
           "UPDATE_SPEC", "UpdateOut", "VIEWS", "critic_layout", "critic_values", "cpu_workspace", "cuda_workspace",
           "record_slices", "update_local_composed", "update_local_cpu", "update_local_cuda", "update_local_launch",
           "update_local_reference"]
