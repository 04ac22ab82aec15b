"""Standard DDPG with the leaky network as the actor
(docs/design.md#5-the-baseline-ddpg-on-the-same-network): the backprop baseline.

Actor ``μ(V, s)``: one environment step of the network (``ℓ`` internal steps from the carried
voltages ``V``) followed by the decoder. Critic: an MLP ``Q(s, a)``. The actor ascends
``Q(s, μ(V, s))`` by backpropagation through the decoder and the ℓ internal steps (BPTT,
truncated at the environment-step boundary: the carried voltages ``V`` are a constant input).

The forward pass, for every batch row (kernels/step, greedy: ξ = 0)::

    V₀ = V with V₀[I] = ε(s)  (clamp)  or  V₀[I] = V[I] + ε(s)  (pulse)
    τ = 0 … ℓ-1:  z = V_τ Kᵀ + b,  y = Θ(z),  α = σ(y),
                  V_{τ+1} = (1-λ)⊙V_τ + λ⊙α,  then V_{τ+1}[I] = ε(s)  (clamp only)
    a = δ(V_ℓ[O]) = half ⊙ clip(V_ℓ[O], -1, 1) + mid

and its adjoint, given ``ḡ_a = ∂L/∂a`` (B, d_act)::

    ḡ_{V_ℓ}[O] = half ⊙ ḡ_a ⊙ 1[-1 ≤ V_ℓ[O] ≤ 1]                         decoder and clip
    τ = ℓ-1 … 0:  ḡ_{V_{τ+1}}[I] = 0 (clamp: the sensors are overwritten)
                  ḡ_α = λ ⊙ ḡ_{V_{τ+1}},   ḡ_y = σ'(y) ⊙ ḡ_α
                  ḡ_z = Θ'(z)ᵀ ḡ_y,   ḡ_K += ḡ_zᵀ V_τ,   ḡ_b += Σ_rows ḡ_z
                  ḡ_{V_τ} = (1-λ) ⊙ ḡ_{V_{τ+1}} + ḡ_z K
    ḡ_K ← ḡ_K ⊙ M                                                       K is stored masked

Divisive inhibition ``y = z·s``, ``s = 1/(1 + κ·m)``, ``m = mean_{n∉I}|z_n|`` has the full
Jacobian ``∂y_i/∂z_j = s·δ_ij − κ s² z_i sign(z_j)·1[j∉I] / (N - |I|)``, so
``ḡ_z = s·ḡ_y − κ s² (ḡ_y·z) sign(z) 1[∉I] / (N - |I|)``. Every step is two GEMMs of
``B·N²`` multiply-adds (``ḡ_zᵀ V`` and ``ḡ_z K``) on the backend's BLAS (cuBLAS on a GPU).

Everything here is written once on the array module ``xp`` of the backend (NumPy or CuPy) in
the backend's dtype (float64 on ``numpy``, where it is checked against finite differences).

The package, one module a job: actor.py (``actor_forward``, ``actor_backward`` and their
parameter, tape and gradient records), critic.py (``Critic``, ``soft_update``) and learner.py
(``DDPGConfig``, ``DDPGLearner``, ``RESULTS_OPTIONS``).
"""

from leaky.learners.ddpg.actor import (ActorGrads, ActorParams, ActorTape, actor_backward, actor_forward,
                                       decoder_affine)
from leaky.learners.ddpg.critic import Critic, soft_update
from leaky.learners.ddpg.learner import DDPG_RULES, NOISES, RESULTS_OPTIONS, DDPGConfig, DDPGLearner

__all__ = ["ActorGrads", "ActorParams", "ActorTape", "Critic", "DDPGConfig", "DDPGLearner", "DDPG_RULES", "NOISES",
           "RESULTS_OPTIONS", "actor_backward", "actor_forward", "decoder_affine", "soft_update"]
