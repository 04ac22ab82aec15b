"""The per-neuron critics' learner side: their hyperparameters, their initial state and the
transitions they learn from.

The arithmetic of an update lives in the kernels (kernels/update_local/ for the ``advantage``
and ``linear`` families, kernels/update_mlp/ for the ``mlp`` family); this module holds what
a learner decides: :class:`UpdateConfig` and :class:`MLPUpdateConfig` (checked, with the integer
codes the kernels take), :func:`init_mlp_critics`, and :func:`build_transitions`, which turns two
consecutive environment steps' caches into the kernels' :class:`Transitions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from leaky.core.errors import ConfigError
from leaky.kernels.scalar import adam_scalars
from leaky.kernels.update_local import BASELINES, CLOCKS, FAMILIES, OPTIMIZERS, VIEWS, LocalScalars, Transitions
from leaky.kernels.update_mlp import MLPScalars

__all__ = ["MLPCritics", "MLPUpdateConfig", "Transitions", "UpdateConfig", "build_transitions",
           "dopamine_td", "init_mlp_critics", "neuron_slices"]


def _adam(cfg, step: int, who: str) -> tuple[float, float]:
    if step < 1:
        raise ConfigError(f"{who}: Adam step must be >= 1, got {step!r}")
    return adam_scalars(cfg.lr_critic, step, cfg.beta1, cfg.beta2, cfg.eps)


@dataclass(frozen=True)
class UpdateConfig:
    """Hyperparameters of one local update (the same for every neuron).

    Parameters
    ----------
    family : {"advantage", "linear"}
    view : {"all", "presynaptic"}
        Critic features: the whole voltage vector, or the voltages of the mask row.
    baseline : {"own", "dopamine"}
        ``own``: TD on the neuron's own critic with a soft-updated target. ``dopamine``: the
        caller passes a shared TD error and the neuron regresses it on its advantage features.
    optimizer : {"sgd", "adam"}
        Of the critic; the actor step is always a plain gradient step.
    lr_critic, lr_actor : float
        Step sizes (``lr_actor = 0`` evaluates a policy without changing it).
    tau_soft : float
        Soft target update rate in [0, 1].
    beta1, beta2, eps : float
        Adam's moment decay rates and ε (added to √v̂).
    """

    family: str = "advantage"
    view: str = "all"
    baseline: str = "own"
    optimizer: str = "adam"
    lr_critic: float = 1e-3
    lr_actor: float = 1e-4
    tau_soft: float = 0.005
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        for name, table in (("family", FAMILIES), ("view", VIEWS), ("baseline", BASELINES),
                            ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in table:
                raise ConfigError(f"UpdateConfig.{name}: got {getattr(self, name)!r}, expected one "
                                  f"of {sorted(table)}")
        for name in ("lr_critic", "lr_actor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"UpdateConfig.{name}: got {value!r}, expected a finite "
                                  "value >= 0")
        if not 0.0 <= self.tau_soft <= 1.0:
            raise ConfigError(f"UpdateConfig.tau_soft: got {self.tau_soft!r}, expected a value "
                              "in [0, 1]")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"UpdateConfig.beta1/beta2: got {(self.beta1, self.beta2)!r}, "
                              "expected values in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"UpdateConfig.eps: got {self.eps!r}, expected a value > 0")

    @property
    def codes(self) -> tuple[int, int, int, int]:
        """``(family, view, baseline, optimizer)`` as the integer codes the kernels take."""
        return (FAMILIES[self.family], VIEWS[self.view], BASELINES[self.baseline],
                OPTIMIZERS[self.optimizer])

    def adam_scalars(self, step: int) -> tuple[float, float]:
        """``(step_size, eps_hat)`` of Adam step ``step`` ≥ 1, bias corrections folded in.

        ``θ −= step_size · m / (√v + eps_hat)`` equals ``θ −= lr · m̂ / (√v̂ + ε)`` (Kingma & Ba's
        efficient form, as in :mod:`leaky.learners.optim`). For SGD: ``(lr_critic, 0)``.
        """
        if self.optimizer == "sgd":
            return self.lr_critic, 0.0
        return _adam(self, step, "update_local")

    def scalars(self, n_inputs: int, activation: int, step: int) -> LocalScalars:
        """What the kernels take for Adam step ``step`` ≥ 1 of a network with ``n_inputs``
        sensors and activation code ``activation``."""
        step_size, eps_hat = self.adam_scalars(step)
        return LocalScalars(int(n_inputs), int(activation), *self.codes, self.lr_critic, self.lr_actor,
                            self.tau_soft, self.beta1, self.beta2, step_size, eps_hat)


@dataclass(frozen=True)
class MLPUpdateConfig:
    """Hyperparameters of one MLP-critic update (the same for every neuron).

    Parameters
    ----------
    view : {"all", "presynaptic"}
        Critic features: the whole voltage vector, or the voltages of the mask row.
    optimizer : {"sgd", "adam"}
        Of the critic; the actor step is always a plain gradient step.
    lr_critic, lr_actor : float
        Step sizes.
    tau_soft : float
        Soft target update rate in [0, 1].
    beta1, beta2, eps : float
        Adam's moment decay rates and ε (added to √v̂).
    actor : bool
        Take the actor step. ``False`` evaluates the current policy (Experiment 1: the local
        critics learn from DDPG's transitions while DDPG trains the weights).
    """

    view: str = "all"
    optimizer: str = "adam"
    lr_critic: float = 1e-3
    lr_actor: float = 1e-4
    tau_soft: float = 0.005
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    actor: bool = True

    def __post_init__(self):
        for name, table in (("view", VIEWS), ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in table:
                raise ConfigError(f"MLPUpdateConfig.{name}: got {getattr(self, name)!r}, "
                                  f"expected one of {sorted(table)}")
        for name in ("lr_critic", "lr_actor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"MLPUpdateConfig.{name}: got {value!r}, expected a finite value >= 0")
        if not 0.0 <= self.tau_soft <= 1.0:
            raise ConfigError(f"MLPUpdateConfig.tau_soft: got {self.tau_soft!r}, expected a value in [0, 1]")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"MLPUpdateConfig.beta1/beta2: got {(self.beta1, self.beta2)!r}, "
                              "expected values in [0, 1)")
        if not self.eps > 0:
            raise ConfigError(f"MLPUpdateConfig.eps: got {self.eps!r}, expected a value > 0")

    @property
    def codes(self) -> tuple[int, int]:
        """``(view, optimizer)`` as the integer codes the kernels take."""
        return VIEWS[self.view], OPTIMIZERS[self.optimizer]

    def adam_scalars(self, step: int) -> tuple[float, float]:
        """``(step_size, eps_hat)`` of Adam step ``step`` ≥ 1, bias corrections folded in.

        ``θ −= step_size · m / (√v + eps_hat)`` equals ``θ −= lr · m̂ / (√v̂ + ε)``. For SGD:
        ``(lr_critic, 0)``.
        """
        if self.optimizer == "sgd":
            return self.lr_critic, 0.0
        return _adam(self, step, "update_mlp")

    def scalars(self, n_inputs: int, activation: int, step: int) -> MLPScalars:
        """What the kernels take for Adam step ``step`` ≥ 1 of a network with ``n_inputs``
        sensors and activation code ``activation``."""
        step_size, eps_hat = self.adam_scalars(step)
        return MLPScalars(int(n_inputs), int(activation), *self.codes, bool(self.actor), self.lr_critic,
                          self.lr_actor, self.tau_soft, self.beta1, self.beta2, step_size, eps_hat)


@dataclass(frozen=True)
class MLPCritics:
    """Every neuron's MLP critic: packed parameters, target, Adam moments (each (N, P)).

    The arrays are the state the kernels update in place; :meth:`params` gives named views.
    """

    theta: Any
    theta_bar: Any
    adam_m: Any
    adam_v: Any
    hidden: int

    @property
    def n_neurons(self) -> int:
        return self.theta.shape[0]

    def params(self, which: str = "theta") -> dict[str, Any]:
        """Named views (:func:`unpack_mlp`) of ``theta``, ``theta_bar``, ``adam_m`` or ``adam_v``."""
        from leaky.kernels.update_mlp import unpack_mlp   # the MLP kernels load on first use

        return unpack_mlp(getattr(self, which), self.hidden)


def init_mlp_critics(N: int, H: int, seed, dtype=np.float64) -> MLPCritics:
    """N critics with H hidden units, NumPy arrays in ``dtype`` (float64 by default).

    Scaled uniform, as PyTorch initialises linear layers: every weight and bias of a layer with
    fan-in F is drawn from U(−1/√F, 1/√F) (F = N+1, H, H for the three layers). The target
    starts equal to the critic, the Adam moments at zero. ``seed``: an int or a Generator.
    """
    if N < 1 or H < 1:
        raise ConfigError(f"init_mlp_critics: N = {N}, H = {H}; expected both >= 1")
    from leaky.kernels.update_mlp import mlp_layout

    rng = np.random.default_rng(seed)
    lay = mlp_layout(N, H)
    theta = np.empty((N, lay.width))
    bound1 = 1.0 / math.sqrt(N + 1)
    bound2 = 1.0 / math.sqrt(H)
    theta[:, :lay.W2] = rng.uniform(-bound1, bound1, (N, lay.W2))
    theta[:, lay.W2:] = rng.uniform(-bound2, bound2, (N, lay.width - lay.W2))
    theta = theta.astype(dtype)
    return MLPCritics(theta, theta.copy(), np.zeros_like(theta), np.zeros_like(theta), H)


def build_transitions(cache_t, cache_next, reward, terminated, gamma, clock, xp) -> Transitions:
    """Transitions of every neuron from two consecutive environment steps' caches.

    ``causal``: slice τ is ``(V_{t,τ}, α_{t,τ}) → r_t, V_{t+1,τ}`` with discount γ (each neuron
    later uses only its decision step τ_n). ``internal``: slice τ is ``V_{t,τ} → V_{t,τ+1}``, the
    last one → ``V_{t+1,0}`` (the next step's first state, sensors applied), reward 0 but on the
    last slice, discount γ^(1/ℓ) (times 1 − terminated on the last slice).

    Parameters
    ----------
    cache_t, cache_next : StepCache of steps t and t+1 (``V (ℓ+1, B, N)``, ``y, alpha (ℓ, B, N)``)
    reward, terminated : (B,) arrays; truncation is not termination (it bootstraps)
    gamma : float
    clock : {"causal", "internal"}
    xp : the array module of the caches (NumPy or CuPy)

    Returns
    -------
    Transitions, C-contiguous arrays in the caches' dtype.
    """
    if clock not in CLOCKS:
        raise ConfigError(f"build_transitions: clock {clock!r}, expected one of {CLOCKS}")
    ell, B, _ = cache_t.alpha.shape
    dtype = cache_t.V.dtype
    r = xp.asarray(reward, dtype=dtype).reshape(B)
    alive = 1 - xp.asarray(terminated, dtype=dtype).reshape(B)
    V = xp.ascontiguousarray(cache_t.V[:ell])
    y = xp.ascontiguousarray(cache_t.y)
    alpha = xp.ascontiguousarray(cache_t.alpha)
    if clock == "causal":
        V_next = xp.ascontiguousarray(cache_next.V[:ell])
        y_next = xp.ascontiguousarray(cache_next.y)
        rewards = xp.ascontiguousarray(xp.broadcast_to(r, (ell, B)))
        cont = xp.ascontiguousarray(xp.broadcast_to(gamma * alive, (ell, B)))
    else:
        V_next = xp.concatenate([cache_t.V[1:ell], cache_next.V[0:1]])
        y_next = xp.concatenate([cache_t.y[1:ell], cache_next.y[0:1]])
        rewards = xp.zeros((ell, B), dtype=dtype)
        rewards[ell - 1] = r
        g = gamma ** (1.0 / ell)
        cont = xp.full((ell, B), g, dtype=dtype)
        cont[ell - 1] = g * alive
    return Transitions(V, y, alpha, V_next, y_next, rewards, cont.astype(dtype, copy=False))


def neuron_slices(decision_step, clock) -> np.ndarray:
    """``tau (N,) int32``: each neuron's slice (``causal``), or −1 = all slices (``internal``)."""
    if clock not in CLOCKS:
        raise ConfigError(f"neuron_slices: clock {clock!r}, expected one of {CLOCKS}")
    step = np.asarray(decision_step, dtype=np.int32)
    return step.copy() if clock == "causal" else np.full_like(step, -1)


def dopamine_td(w_v, c_v, x, x_next, r, cont, lr):
    """Shared linear value function ``V(x) = w_v·x + c_v``: TD error, then one SGD step.

    ``δ = r + cont·V(x') − V(x)`` for every transition; then ``w_v += lr·mean[δ x]``,
    ``c_v += lr·mean[δ]`` in place (means over all T·B transitions). Runs on the arrays'
    module (NumPy or CuPy), not a per-neuron kernel.

    Parameters
    ----------
    w_v : (N,);  c_v : (1,) (an array, so it can change in place)
    x, x_next : (T, B, N) voltages;  r, cont : (T, B)
    lr : float

    Returns
    -------
    delta : (T, B), the TD error before the step (what the neurons regress on).
    """
    delta = r + cont * (x_next @ w_v + c_v[0]) - (x @ w_v + c_v[0])
    count = delta.size
    N = x.shape[-1]
    w_v += (lr / count) * (delta.reshape(-1) @ x.reshape(-1, N))
    c_v += (lr / count) * delta.sum()
    return delta
