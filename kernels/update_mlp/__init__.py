"""Fused update of per-neuron MLP critics: the ``mlp`` critic family (the paper's Experiment 1).

Every non-sensor neuron n owns a critic, a three-layer perceptron of ``[x, α]``::

    x   = f_n ⊙ V                    (N,)  features: f_n = 1 (view "all") or the mask row M[n] ≠ 0
    h1  = tanh(W1 [x; α] + b1)       W1 (H, N+1), b1 (H,)
    h2  = tanh(W2 h1 + b2)           W2 (H, H),   b2 (H,)
    Q_n(x, α) = w3·h2 + b3           w3 (H,),     b3 scalar           (hidden units: tanh)

From a batch of transitions it takes one critic step, then (optionally) one actor step with the
updated critic, then a soft target update::

    δ      = r + cont·Q̄_n(x', μ_n(x')) − Q_n(x, α),   μ_n(x') = σ(y'_n)     (target θ̄ held fixed)
    critic   θ ← θ + lr_critic · mean[δ ∂Q_n/∂θ]     SGD on ½δ²; or Adam on g = −mean[δ ∂Q_n/∂θ]
    actor    g = ∂Q_n/∂α at α = μ_n(x) = σ(y_n), through the updated critic
             K[n, m] += lr_actor · mean[g σ'(y_n) V_m]  for every m with M[n, m] ≠ 0
             b_n     += lr_actor · mean[g σ'(y_n)]      (skipped when sc.actor is False)
    target   θ̄ ← (1 − τ_soft) θ̄ + τ_soft θ

The means run over the batch b and the neuron's slices t: ``t = tau[n]`` only (``causal`` clock)
or every t (``internal`` clock: ``tau[n] = -1``). Sensor neurons ``n < n_inputs`` are not agents:
nothing of theirs is read or written (their diagnostics are 0).

Parameters are packed, one row per neuron (:func:`mlp_layout`), ``theta (N, P)``,
``P = H(N+1) + H + H² + H + H + 1``::

    [ W1 (H×(N+1), row k = unit k's weights, last column = α) | b1 (H) | W2 (H×H, row k = unit k
      of layer 2) | b2 (H) | w3 (H) | b3 ]

and :func:`unpack_mlp` gives the views ``W1 (N, H, N+1), b1 (N, H), W2 (N, H, H), b2 (N, H),
w3 (N, H), b3 (N,)``. The target ``theta_bar`` and the Adam moments ``adam_m``, ``adam_v`` have
the same layout. Every parameter is stepped; under the ``presynaptic`` view the W1 columns of
masked-out features get an exactly zero gradient (so under SGD, or Adam from zero moments, they
never move, and they multiply zero features anyway).

The named tuples of ``update_local``: ``tr.V, y, alpha, V_next, y_next (T, B, N)`` state
voltages, y after inhibition at the state, actions as taken, next-state voltages, y at the next
state; ``tr.reward, cont (T, B)`` reward and discount·(1 − terminated); ``top.tau (N,) int32``,
``top.mask (N, N)``, ``top.col_lo, col_hi (N,) int32`` the presynaptic column range of each row
of K; ``actor.K (N, N)``, ``actor.bias (N,)``; ``out.diag (N, 3)`` written: mean δ, mean |δ|,
mean slope g (the slope is computed with the updated critic whether or not the actor step runs).

Cost per call, per transition and neuron (S transitions per neuron: B causal, T·B internal):
forward at (x, α) and target forward at (x', μ') ``2·(H(N+1) + H²)``, backward ``H²``, gradient
``H(N+1) + H²``, slope pass ``H(N+1) + 2H²``, row of K ``N`` multiply-adds: about
``S·N·(4H(N+1) + 6H² + N)`` in all, plus ``O(N·P)`` for the optimizer and the target.

Faces, one signature ``update_mlp_<face>(tr, top, actor, critic, sc, out)`` (boundary.py: the
``kernels.data`` tuples and :class:`MLPScalars`): ``update_mlp_reference`` (reference.py, NumPy
float64, the definition; ``update_mlp_composed`` beside it, the same update from batched NumPy
calls, what the faces are benchmarked against; the critics' values and slopes),
``update_mlp_cpu`` (cpu.py, numba.njit, panels of 16 transitions) and ``update_mlp_cuda``
(cuda.py, one launch of one block per neuron, and its scalar device math; ``update_mlp_launch``
is that launch for a captured program). boundary.py also holds the option codes, the cuda
face's bounds and the critic layout.
"""

from __future__ import annotations

from leaky.kernels.update_mlp.boundary import (CLOCKS, MAX_HIDDEN, NTHREADS, OPTIMIZERS, TILE_S, VIEWS, ActorRows,
                                               CriticState, MLPLayout, MLPScalars, Topology, Transitions, UpdateOut,
                                               mlp_hidden, mlp_layout, unpack_mlp)
from leaky.kernels.update_mlp.cpu import BLOCK_CPU, PARALLEL_MIN_WORK, update_mlp_cpu, update_work
from leaky.kernels.update_mlp.cuda import CUDA_KERNELS, MLP_SPEC, update_mlp_cuda, update_mlp_launch
from leaky.kernels.update_mlp.reference import (critic_values, mlp_forward_reference, slopes_mlp_reference,
                                                slopes_one_reference, update_mlp_composed, update_mlp_reference)

FACES = {"numpy": update_mlp_reference, "cpu": update_mlp_cpu, "cuda": update_mlp_cuda}
"""The update face each backend runs (:mod:`leaky.core.backend` names)."""

__all__ = ["ActorRows", "BLOCK_CPU", "CLOCKS", "CUDA_KERNELS", "CriticState", "FACES", "MAX_HIDDEN", "MLPLayout",
           "MLPScalars", "MLP_SPEC", "NTHREADS", "OPTIMIZERS", "PARALLEL_MIN_WORK", "TILE_S", "Topology",
           "Transitions", "UpdateOut", "VIEWS", "critic_values", "mlp_forward_reference", "mlp_hidden",
           "mlp_layout", "slopes_mlp_reference", "slopes_one_reference", "unpack_mlp", "update_mlp_composed",
           "update_mlp_cpu", "update_mlp_cuda", "update_mlp_launch", "update_mlp_reference", "update_work"]
