"""The network: parameters, topology, encoder/decoder, and one environment step.

An environment step with observation ``s`` (docs/design.md#2-the-network)::

    V[:, I] = ε(s)   (clamp)   or   V[:, I] += ε(s)   (pulse)
    ℓ times:  z = V Kᵀ + b,  y = Θ(z),  α = σ(y) + ξ,  V ← (1-λ)⊙V + λ⊙α   (sensors re-clamped)
    a = δ(V[:, O])

The arithmetic lives in :mod:`leaky.kernels.step`; this module validates, allocates and
dispatches to the backend's face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from leaky.core.backend import Backend, get_backend, to_numpy
from leaky.model.config import NetworkConfig
from leaky.core.errors import ConfigError, InputError, describe
from leaky.kernels import step as step_kernels
from leaky.kernels.scalar import ACTIVATIONS, INHIBITIONS, sigma


@dataclass(frozen=True)
class StepCache:
    """What one environment step leaves for learning (backend arrays).

    Attributes
    ----------
    V : (ℓ+1, B, N)  voltages before every internal step (``V[0]``: sensors applied) and after the last
    z : (ℓ, B, N)    pre-activations ``V[τ] Kᵀ + b``
    y : (ℓ, B, N)    after inhibition, ``Θ(z)``
    alpha : (ℓ, B, N)  actions as taken, ``σ(y) + ξ``
    """

    V: Any
    z: Any
    y: Any
    alpha: Any


def build_mask(cfg: NetworkConfig, rng: np.random.Generator) -> np.ndarray:
    """The 0/1 topology mask ``M[n, m]`` (from m to n) of a config, as float64."""
    N = cfg.n_neurons
    if cfg.topology == "dense":
        return np.ones((N, N))
    if cfg.topology == "sparse":
        M = np.zeros((N, N))
        for n in range(N):
            M[n, rng.choice(N, size=cfg.fan_in, replace=False)] = 1.0
        return M
    M = np.zeros((N, N))
    starts = np.cumsum((0,) + cfg.layer_sizes)
    for i in range(len(cfg.layer_sizes) - 1):
        M[starts[i + 1]:starts[i + 2], starts[i]:starts[i + 1]] = 1.0
    return M


def output_distances(mask: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``d[n]``: hops from neuron n to the nearest output along mask edges (−1 if none)."""
    N = mask.shape[0]
    d = np.full(N, -1, dtype=np.int64)
    d[outputs] = 0
    frontier = list(outputs)
    hops = 0
    while frontier:
        hops += 1
        # predecessors m of the frontier: M[n, m] != 0 for some n in the frontier
        preds = np.flatnonzero(mask[frontier].any(axis=0))
        frontier = [int(m) for m in preds if d[m] < 0]
        d[frontier] = hops
    return d


def reachable_from(mask: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Boolean (N,): neurons reachable from ``sources`` along mask edges m → n."""
    seen = np.zeros(mask.shape[0], dtype=bool)
    seen[sources] = True
    frontier = np.asarray(sources, dtype=np.int64)
    while frontier.size:
        nxt = np.flatnonzero(mask[:, frontier].any(axis=1) & ~seen)
        seen[nxt] = True
        frontier = nxt
    return seen


class Network:
    """A batch-shared recurrent network of rate neurons.

    Parameters
    ----------
    config : NetworkConfig
    backend : {"auto", "numpy", "cpu", "cuda"}
        ``numpy`` runs the float64 reference kernels, ``cpu`` the Numba CPU kernels (float32),
        ``cuda`` the Numba CUDA kernels on CuPy arrays (float32).
    mask : (N, N) array, optional
        A topology of your own (non-zero = connection from column m to row n), replacing the
        one ``config.topology`` would build.
    observation_space, action_space : gymnasium.spaces.Box, optional
        When given, the encoder maps the observation bounds affinely to [-1, 1] (dimensions with
        infinite bounds pass through unchanged) and the decoder maps [-1, 1] to the action box;
        without them the encoder is the identity and the decoder clips to [-1, 1].

    Attributes
    ----------
    K : (N, N) weights, ``K[n, m]`` from m to n, stored masked (zero off the mask)
    b : (N,) bias;  leak : (N,) λ;  mask : (N, N) 0/1
    """

    def __init__(self, config: NetworkConfig, backend: str | Backend = "auto",
                 observation_space=None, action_space=None, mask=None):
        if not isinstance(config, NetworkConfig):
            raise ConfigError(f"config: got {type(config).__name__}, expected a leaky.NetworkConfig")
        self.config = config
        self.backend = get_backend(backend)
        cfg = config
        N = cfg.n_neurons
        rng = np.random.default_rng(cfg.seed)
        if mask is None:
            mask = build_mask(cfg, rng)
        else:
            mask = (to_numpy(mask) != 0).astype(np.float64)
            if mask.shape != (N, N):
                raise ConfigError(f"mask: got shape {mask.shape}, expected (n_neurons, n_neurons) = {(N, N)}")
        self.inputs = np.arange(cfg.n_inputs)
        self.outputs = np.arange(N - cfg.n_outputs, N)
        self._check_reachable(mask)
        fan_in = np.maximum(mask.sum(axis=1), 1.0)
        K = rng.standard_normal((N, N)) * (cfg.weight_scale / np.sqrt(fan_in))[:, None] * mask
        leak = np.broadcast_to(np.asarray(cfg.leak, dtype=np.float64), (N,))

        self.mask_np = mask
        self.distance = output_distances(mask, self.outputs)
        # τ_n = max(0, ℓ − 1 − d_n): the internal step at which neuron n's action reaches the
        # outputs by the end of the environment step (docs/design.md#3-every-neuron-is-an-agent,
        # causal clock).
        d = np.where(self.distance < 0, cfg.delay, self.distance)
        self.decision_step = np.maximum(0, cfg.delay - 1 - d).astype(np.int32)
        nz = mask != 0
        any_nz = nz.any(axis=1)
        self.col_lo = np.where(any_nz, nz.argmax(axis=1), 0).astype(np.int32)
        self.col_hi = np.where(any_nz, N - nz[:, ::-1].argmax(axis=1), 0).astype(np.int32)
        self._tile_lo, self._tile_hi = step_kernels.tile_ranges(self.col_lo, self.col_hi)
        self._nnz = step_kernels.presynaptic_count(self.col_lo, self.col_hi)

        be = self.backend
        self.K = be.asarray(K)
        self.b = be.zeros(N)
        self.leak = be.asarray(leak)
        self.mask = be.asarray(mask)
        if be.name == "cuda":
            self._tile_lo_dev = be.asarray(self._tile_lo, dtype=np.int32)
            self._tile_hi_dev = be.asarray(self._tile_hi, dtype=np.int32)
        else:
            self._tile_lo_dev = self._tile_hi_dev = None

        self._activation = ACTIVATIONS[cfg.activation]
        self._inhibition = INHIBITIONS[cfg.inhibition]
        self._pulse = cfg.input_mode == "pulse"
        self.observation_space = observation_space
        self.action_space = action_space
        self._encoder = self._make_encoder(observation_space)
        self._decoder = self._make_decoder(action_space)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def layered(cls, sizes: Sequence[int], backend: str | Backend = "auto",
                observation_space=None, action_space=None, **overrides) -> "Network":
        """The MLP ``[d_obs, h1, …, d_act]`` as a network: layered mask, delay = layers, leak 1."""
        return cls(NetworkConfig.layered(sizes, **overrides), backend=backend,
                   observation_space=observation_space, action_space=action_space)

    def _check_reachable(self, mask):
        if self.config.n_inputs == 0:
            return
        seen = reachable_from(mask, self.inputs)
        cut = [int(n) for n in self.outputs if not seen[n]]
        if cut:
            raise ConfigError(
                f"mask: output neuron(s) {cut} cannot be reached from the sensors "
                f"0..{self.config.n_inputs - 1}; expected a path from the sensors to every output "
                f"(topology={self.config.topology!r})")

    def _make_encoder(self, space):
        n_in = self.config.n_inputs
        if space is None:
            return None
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        if low.size != n_in:
            raise ConfigError(f"observation_space: has {low.size} dimensions, expected n_inputs = {n_in}")
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        scale = np.where(finite, 2.0 / np.where(finite, high - low, 1.0), 1.0)
        shift = np.where(finite, -1.0 - low * scale, 0.0)
        return self.backend.asarray(scale), self.backend.asarray(shift)

    def _make_decoder(self, space):
        n_out = self.config.n_outputs
        if space is None:
            return None
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        if low.size != n_out:
            raise ConfigError(f"action_space: has {low.size} dimensions, expected n_outputs = {n_out}")
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ConfigError("action_space: expected finite bounds (the decoder maps [-1, 1] onto them)")
        return self.backend.asarray((high - low) / 2.0), self.backend.asarray((high + low) / 2.0)

    # -- properties -------------------------------------------------------------------------

    @property
    def n_neurons(self) -> int:
        return self.config.n_neurons

    @property
    def delay(self) -> int:
        return self.config.delay

    @property
    def xp(self):
        return self.backend.xp

    def parameters(self) -> dict:
        """NumPy copies of K, b, leak and mask."""
        return {"K": to_numpy(self.K), "b": to_numpy(self.b), "leak": to_numpy(self.leak),
                "mask": to_numpy(self.mask)}

    def set_parameters(self, K=None, b=None) -> None:
        """Replace K (masked on the way in) and/or b by copies, checking shapes."""
        N = self.n_neurons
        if K is not None:
            K = self._check_array("K", K, (N, N))
            self.K = K * self.mask
        if b is not None:   # a copy: training changes b in place, never the caller's array
            self.b = self._check_array("b", b, (N,)).copy()

    # -- encoder / decoder ------------------------------------------------------------------

    def encode(self, obs):
        """Observation (B, n_inputs) → sensor voltages ε(s)."""
        if self._encoder is None:
            return obs
        scale, shift = self._encoder
        return obs * scale + shift

    def decode(self, V_out):
        """Output voltages (B, n_outputs) → actions δ(V_O), clipped to the action box."""
        a = self.xp.clip(V_out, -1.0, 1.0)
        if self._decoder is None:
            return a
        half, mid = self._decoder
        return a * half + mid

    # -- stepping ---------------------------------------------------------------------------

    def reset(self, batch: int):
        """Voltages at episode start: zeros (batch, N)."""
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise InputError(f"reset: batch must be a positive int, got {batch!r}")
        return self.backend.zeros((int(batch), self.n_neurons))

    def sample_noise(self, rng, batch: int, std) -> Any:
        """Exploration noise ξ (ℓ, batch, N) from a backend generator, N(0, std²) per neuron."""
        xi = rng.standard_normal((self.delay, batch, self.n_neurons))
        std = self.backend.asarray(np.broadcast_to(np.asarray(std, dtype=np.float64), (self.n_neurons,)))
        return xi * std

    def step(self, V, obs, noise=None):
        """One environment step: ℓ internal steps in one fused kernel call.

        Parameters
        ----------
        V : (B, N) backend array, voltages carried from the previous step (``reset`` at start)
        obs : (B, n_inputs) observations (anything array-like; copied to the backend)
        noise : (ℓ, B, N) exploration noise ξ, or None to act greedily

        Returns
        -------
        V : (B, N) voltages after the last internal step
        action : (B, n_outputs) decoded actions
        cache : StepCache of every internal step
        """
        N, ell = self.n_neurons, self.delay
        V = self._check_array("V", V, (None, N))
        B = V.shape[0]
        obs = self._check_array("obs", obs, (B, self.config.n_inputs), finite=True)
        if noise is None:
            xi = self.backend.zeros((ell, B, N))
        else:
            xi = self._check_array("noise", noise, (ell, B, N), finite=True)
        u = self.backend.asarray(self.encode(obs))
        cache = self.advance(V, u, xi)
        V_new = cache.V[ell]
        return V_new, self.decode(V_new[:, N - self.config.n_outputs:]), cache

    def advance(self, V, u, xi) -> StepCache:
        """The raw kernel call on validated backend arrays: sensor input ``u`` already encoded."""
        ell, B, N = xi.shape
        be = self.backend
        net = step_kernels.StepNet(self.K, self.b, self.leak, self.col_lo, self.col_hi,
                                   self._tile_lo_dev, self._tile_hi_dev, self._nnz)
        flags = step_kernels.StepFlags(self.config.n_inputs, self._activation, self._inhibition,
                                       self.config.kappa, self._pulse)
        if be.name == "numpy":
            out = step_kernels.step_reference(V, u, xi, net, flags)
        else:
            out = step_kernels.StepOut(be.empty((ell + 1, B, N)), be.empty((ell, B, N)),
                                       be.empty((ell, B, N)), be.empty((ell, B, N)))
            face = step_kernels.step_cpu if be.name == "cpu" else step_kernels.step_cuda
            face(V, u, xi, net, flags, out)
        return StepCache(*out)

    def greedy_actions(self, cache: StepCache):
        """μ = σ(y) for every internal step (ℓ, B, N): the actions without noise."""
        return sigma(cache.y, self._activation, self.xp)

    def _check_array(self, name, x, shape, finite=False):
        """Validate and move ``x`` to the backend (float dtype, shape with None = any)."""
        xp = self.xp
        if not hasattr(x, "shape"):
            try:
                x = np.asarray(x, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise InputError(f"{name}: got {describe(x)}, expected a numeric array of shape "
                                 f"{_fmt(shape)}") from e
        kind = np.dtype(x.dtype).kind
        if kind not in "fiub":
            raise InputError(f"{name}: got {describe(x)}, expected a real numeric dtype")
        if len(x.shape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape)):
            raise InputError(f"{name}: got shape {tuple(x.shape)}, expected {_fmt(shape)}")
        x = self.backend.asarray(x)
        if finite and not bool(xp.isfinite(x).all()):
            raise InputError(f"{name}: contains NaN or inf values; expected finite values")
        return x


def _fmt(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
