"""Backprop-free actor steps scored by one shared critic (the ``local`` learner's credit rules).

DDPG's critic, DDPG's replay, targets and exploration, and a different actor step: instead of
backpropagating ``∂Q/∂a`` through the network, the critic broadcasts ``g = ∂Q/∂a`` per sample
(a vector dopamine, ``d_act`` numbers) and every neuron estimates its own effect on the action
from quantities it has locally (``kernels/credit``)::

    perturb    activity tangents T ~ N(0, 1) injected at every neuron's decision step, carried to
               the action with the network's own weights (kernels/tangent, a forward pass);
               e_n = mean_j (g·ȧ_j) T_jn
    feedback   F_n ← (1−β) F_n + β mean(ȧ T_n), a running estimate of E[∂a/∂α_n]; e_n = g·F_n
    dfa        e_n = g·B_n with B fixed and random (direct feedback alignment)

Output neurons use their exact ``∂a/∂α`` (decoder gain × clip × λ, all local), so no tangent is
injected at them. Each neuron then steps its own row of K and its bias by
Adam on ``−mean_b e_bn σ'(y_bn) V_{τ_n}[b, :]``. Backprop stays inside the critic ``Q(s, a)``
(an MLP trained by TD exactly as DDPG's); the network is never backpropagated through.

The actor update is two kernel calls per minibatch: the tangent step (primal and k tangents, all
ℓ internal steps) and the credit update (every neuron's e, σ', row gradient, Adam and feedback
row). Docs: docs/learners.md; the math: docs/credit.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from leaky.core.backend import get_backend, to_numpy
from leaky.learners.ddpg import DDPGLearner
from leaky.kernels import credit as ck
from leaky.kernels import tangent as tk
from leaky.kernels.data import Topology
from leaky.kernels.scalar import ADAM_BETA1, ADAM_BETA2, adam_scalars
from leaky.kernels.step import tile_ranges
from leaky.model.network import Network

if TYPE_CHECKING:  # pragma: no cover
    from leaky.learners.local import LocalConfig


def layer_groups(net: Network) -> dict[str, np.ndarray]:
    """Agent neurons grouped for per-layer figures: ``{"tau0": ids, …, "out": ids}`` by decision
    step (in a layered network, one group per hidden layer), the outputs on their own."""
    N, n_in, n_out = net.n_neurons, net.config.n_inputs, net.config.n_outputs
    hidden = np.arange(n_in, N - n_out)
    groups = {f"tau{t}": hidden[net.decision_step[hidden] == t]
              for t in sorted(set(net.decision_step[hidden].tolist()))}
    groups["out"] = np.arange(N - n_out, N)
    return groups


def group_cosines(G, Gb, ref_K, ref_b, groups: dict, backend) -> dict:
    """Cosines of a row gradient ``(G (N, N), Gb (N,))`` with ``(ref_K, ref_b)``, flattened over
    the rows of each group (``cos_<group>``) and over every group's rows together (``cos_all``):
    backend scalars (0-d arrays)."""
    xp = backend.xp
    out = {}
    for name, ids in {**groups, "all": np.concatenate(list(groups.values()))}.items():
        idx = backend.asarray(ids, dtype=np.int64)
        a = xp.concatenate([G[idx].reshape(-1), Gb[idx]])
        r = xp.concatenate([ref_K[idx].reshape(-1), ref_b[idx]])
        denom = xp.sqrt((a * a).sum() * (r * r).sum())
        out[f"cos_{name}"] = (a * r).sum() / xp.maximum(denom, 1e-30)
    return out


class SharedCriticLearner(DDPGLearner):
    """DDPG whose actor step is a backprop-free credit rule (``LocalConfig.rule``).

    Parameters
    ----------
    net : Network
        The actor, trained in place.
    cfg : LocalConfig
        With ``rule`` one of ``perturb``, ``feedback``, ``dfa``; the critic, replay and
        exploration options map onto :class:`~leaky.learners.ddpg.DDPGConfig` (``LocalConfig.ddpg_config``).

    Attributes
    ----------
    F : (N, d_act) the feedback weights (``feedback``: learned, start at 0; ``dfa``: fixed,
        N(0, 1/d_act)); unused by ``perturb``.
    """

    def __init__(self, net: Network, cfg: "LocalConfig"):
        super().__init__(net, cfg.ddpg_config())
        self.local = cfg
        be = self.backend
        N, ncfg = self.N, net.config
        self.rule = ck.RULES[cfg.rule]
        self.k = int(cfg.tangents) if cfg.rule != "dfa" else 0
        ell = net.delay
        self.flags = tk.TangentFlags(ncfg.n_inputs, net._activation, net._inhibition,
                                     float(ncfg.kappa), net._pulse, ell)
        tau = net.decision_step.astype(np.int32)
        last = tk.decision_last(tau, ell, net._inhibition)
        self._tau = be.asarray(tau, dtype=np.int32)
        self._last = be.asarray(last, dtype=np.int32)
        self._col_lo = be.asarray(net.col_lo, dtype=np.int32)
        self._col_hi = be.asarray(net.col_hi, dtype=np.int32)
        self._tile_lo, self._tile_hi = (be.asarray(a, dtype=np.int32)
                                        for a in tile_ranges(net.col_lo, net.col_hi))
        self.top = Topology(self._tau, net.mask, self._col_lo, self._col_hi)
        credit_seed, tangent_seed, shuffle_seed = np.random.SeedSequence([cfg.seed, 1]).spawn(3)
        if cfg.rule == "dfa":
            F = np.random.default_rng(credit_seed).standard_normal((N, self.n_act)) / np.sqrt(self.n_act)
        else:
            F = np.zeros((N, self.n_act))
        self.F = be.asarray(F)
        self.mK, self.vK = be.zeros((N, N)), be.zeros((N, N))
        self.mb, self.vb = be.zeros(N), be.zeros(N)
        self.G, self.Gb = be.zeros((N, N)), be.zeros(N)
        self.actor_steps = 0
        self._tangent_rng = self.stream("tangent", int(tangent_seed.generate_state(1)[0] >> 1))
        self._shuffle_rng = self.stream("shuffle", shuffle_seed, backend=get_backend("numpy"))   # on the host
        self._tangent_face = tk.FACES[be.name]
        self._credit_face = ck.FACES[be.name]
        self._leak_out = net.leak[N - self.n_act:]
        self.groups = layer_groups(net)
        self._buffers: dict = {}   # (B, k) -> TangentOut, the tangent step's outputs and scratch

    # -- the two kernels --------------------------------------------------------------------

    def _tangent_net(self, K, b) -> tk.TangentNet:
        net = self.net
        return tk.TangentNet(K, b, net.leak, self._tau, self._last, self._col_lo, self._col_hi,
                             self._tile_lo, self._tile_hi)

    def _forward(self, K, b, V, obs, k: int) -> tk.TangentOut:
        """The greedy step from carried voltages ``V`` with ``k`` tangents per row."""
        be, net = self.backend, self.net
        B, N, ell = V.shape[0], self.N, net.delay
        if not k:
            T = be.zeros((0, B, N))
        elif self.local.tangent_dist == "rademacher":   # ±1: 12× cheaper to draw, E[ξ⁴] = 1 < 3
            T = self._tangent_rng.rademacher((k, B, N))
        else:
            T = self._tangent_rng.standard_normal((k, B, N))
        # No tangents at the outputs: their e is exact, and a tangent there would only add its
        # share ||∂a/∂α_O||² to the variance of every hidden neuron's estimate.
        T[:, :, N - self.n_act:] = 0.0
        out = self._buffers.get((B, k))
        if out is None:   # kept between calls: fresh multi-MB arrays cost page faults every step
            out = self._buffers[(B, k)] = tk.TangentOut(
                be.empty((ell + 1, B, N)), be.empty((ell, B, N)), be.empty((ell, B, N)),
                be.empty((ell, B)), be.empty((k, B, N)), be.empty((k, B, N)))
        u = be.asarray(net.encode(obs))
        self._tangent_face(be.asarray(V), u, T, self._tangent_net(K, b), self.flags, out)
        return T, out

    def _decode(self, V_out):
        """``(action, inside)``: the decoded action and the clip's 0/1 derivative (B, d_act)."""
        inside = ((V_out >= -1.0) & (V_out <= 1.0)).astype(V_out.dtype)
        return self.xp.clip(V_out, -1.0, 1.0) * self.half + self.mid, inside

    def target_action(self, batch):
        """The target actor's greedy action at the next states (the tangent step, k = 0)."""
        _, out = self._forward(self.K_target, self.b_target, batch.V_next, batch.next_obs, 0)
        return self._decode(out.Vc[-1][:, self.N - self.n_act:])[0]

    def actor_step(self, batch) -> dict:
        """One credit update of every neuron's row from ``batch`` (replaces DDPG's BPTT step)."""
        xp, net, cfg = self.xp, self.net, self.local
        N, n_act = self.N, self.n_act
        aligning = cfg.align_every and self.actor_steps % cfg.align_every == 0
        reference = self.bptt_gradient(batch)[1] if aligning else None   # before the step
        T, out = self._forward(net.K, net.b, batch.V, batch.obs, self.k)
        action, inside = self._decode(out.Vc[-1][:, N - n_act:])
        q_pi, cache = self.critic.forward(batch.obs, action)
        B = q_pi.shape[0]
        _, g = self.critic.backward(cache, xp.ones(B, dtype=q_pi.dtype), param_grads=False)
        if cfg.shuffle_credit:   # a null: every sample gets another sample's broadcast
            g = g[self.backend.asarray(self._shuffle_rng.permutation(B), dtype=np.int64)]
        gain = self.half * inside
        self.actor_steps += 1
        step_size, eps_hat = adam_scalars(cfg.lr_actor or 1.0, self.actor_steps)
        sc = ck.CreditScalars(net.config.n_inputs, net._activation, self.rule, float(cfg.feedback_rate),
                              step_size, eps_hat, ADAM_BETA1, ADAM_BETA2, cfg.lr_actor > 0)
        credit = ck.CreditBatch(out.Vc, out.y, out.scale, T,
                                xp.ascontiguousarray(gain * out.Vdot[:, :, N - n_act:]),
                                xp.ascontiguousarray(g), xp.ascontiguousarray(gain * self._leak_out))
        params = ck.CreditParams(net.K, net.b, self.F, self.mK, self.vK, self.mb, self.vb)
        self._credit_face(credit, params, self.top, sc, ck.CreditGrads(self.G, self.Gb))
        stats = {"actor_q": q_pi.mean(),
                 "actor_grad_norm": xp.sqrt((self.G * self.G).sum() + (self.Gb * self.Gb).sum())}
        if reference is not None:
            stats.update(self.cosines(-reference.K, -reference.b))
        return stats

    # -- diagnostics ------------------------------------------------------------------------

    def cosines(self, ref_K, ref_b) -> dict:
        """Cosines of the last credit gradient ``(G, Gb)`` with ``(ref_K, ref_b)`` (BPTT's ascent
        direction on the same minibatch), per group of :func:`layer_groups` (``cos_<group>``)
        and over every agent row (``cos_all``): :func:`group_cosines`."""
        return group_cosines(self.G, self.Gb, ref_K, ref_b, self.groups, self.backend)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self, include_replay: bool = True) -> dict:
        d = super().state_dict(include_replay)
        for name in ("F", "mK", "vK", "mb", "vb"):
            d[f"credit.{name}"] = to_numpy(getattr(self, name)).copy()
        d["credit.actor_steps"] = np.asarray(self.actor_steps, dtype=np.int64)
        return d

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        for name in ("F", "mK", "vK", "mb", "vb"):
            getattr(self, name)[...] = self.backend.asarray(np.asarray(d[f"credit.{name}"]))
        self.actor_steps = int(np.asarray(d["credit.actor_steps"]))


