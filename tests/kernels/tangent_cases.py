"""Shared case builders of the tangent-step tests: random inputs, a face run on copies and the
float32 tolerance (tests/kernels/test_tangent.py, tests/cudasim/test_tangent_cuda.py)."""

import numpy as np

from leaky.kernels import step as step_kernels
from leaky.kernels import tangent as tk
from leaky.model.config import NetworkConfig
from leaky.model.network import Network

FACES = {"numpy": tk.tangent_step_reference, "cpu": tk.tangent_step_cpu}
OUTPUTS = ("Vc", "z", "y", "scale", "Vdot")


def _f32(a):
    """Values float32 represents exactly, held in float64: every face sees the same inputs."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def random_tangent_case(rng, B, N, n_in, n_out, ell, k, topology="dense", activation=0,
                        inhibition=0, pulse=False, last="decision", tau="decision", seed=0):
    """``(V0, u, T, net, flags)`` in float64 (float32 values) for one tangent step.

    ``topology`` as in NetworkConfig (``layered``: one hidden layer, ℓ = 2, whatever ``ell``
    says). ``tau``: the network's decision steps or ``"random"`` in [0, ℓ). ``last``:
    ``"decision"`` (kernels/tangent's decision_last: tau, or ℓ−1 under inhibition),
    ``"full"`` (ℓ−1 everywhere) or ``"random"`` (between tau and ℓ−1; not under inhibition).
    """
    extra = {}
    if topology == "sparse":
        extra["fan_in"] = max(1, N // 3)
    if topology == "layered":
        hidden = N - n_in - n_out
        sizes = (n_in,) + ((hidden,) if hidden else ()) + (n_out,)
        extra["layer_sizes"] = sizes
        ell = len(sizes) - 1
    cfg = NetworkConfig(n_neurons=N, n_inputs=n_in, n_outputs=n_out, delay=ell,
                        leak=tuple(rng.uniform(0.05, 1.0, size=N)), topology=topology, seed=seed,
                        weight_scale=1.5, **extra)
    net = Network(cfg, backend="numpy")   # raises ConfigError if a sparse mask cuts an output off
    taus = (net.decision_step if tau == "decision" else rng.integers(0, ell, size=N)).astype(np.int32)
    if last == "full" or inhibition == 1:
        lasts = np.full(N, ell - 1, np.int32)
    elif last == "random":
        lasts = rng.integers(taus, ell).astype(np.int32)
    else:
        lasts = tk.decision_last(taus, ell, inhibition)
    tnet = tk.TangentNet(_f32(net.K), _f32(0.5 * rng.standard_normal(N)), _f32(net.leak), taus,
                         lasts, net.col_lo, net.col_hi, *step_kernels.tile_ranges(net.col_lo, net.col_hi))
    flags = tk.TangentFlags(n_in, activation, inhibition, 0.7, pulse, ell)
    V0 = _f32(rng.standard_normal((B, N)))
    u = _f32(rng.standard_normal((B, n_in)))
    T = _f32(rng.standard_normal((k, B, N)))
    return V0, u, T, tnet, flags


def empty_out(ell, k, B, N, xp=np, fill=np.nan):
    """A TangentOut of float32 arrays poisoned with NaN (every entry must be written)."""
    f = lambda *s: xp.full(s, fill, dtype=np.float32)  # noqa: E731
    return tk.TangentOut(f(ell + 1, B, N), f(ell, B, N), f(ell, B, N), f(ell, B), f(k, B, N),
                         f(k, B, N))


def run_face(face, V0, u, T, net, flags, **kw):
    """One tangent step on ``face`` ("numpy", "cpu" or a function); float64 NumPy results."""
    if face == "numpy":
        out = tk.tangent_step_reference(V0, u, T, net, flags)
        return dict(zip(OUTPUTS, out[:5]))
    fn = FACES[face] if isinstance(face, str) else face
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    k, B, N = T.shape
    net32 = net._replace(K=f32(net.K), bias=f32(net.bias), leak=f32(net.leak))
    out = empty_out(flags.ell, k, B, N)
    fn(f32(V0), f32(u), f32(T), net32, flags, out, **kw)
    return {name: np.asarray(a, dtype=np.float64) for name, a in zip(OUTPUTS, out[:5])}


# float32 faces against the float64 reference. Each pre-activation sums up to N products of
# O(1) terms: rounding ~ √N·2⁻²⁴ typically, N·2⁻²⁴ at worst, relative to the largest term; ℓ ≤ 4
# steps with |σ'| ≤ 1, λ ≤ 1 and weights of scale 1.5/√fan_in carry it forward without growing it
# relative to the values, and a tangent is one more such sum per step (tanh32: 3e-7 absolute).
# atol 2e-6·max(1, N/64) relative to each output's largest |value|: the worst seen over 300
# random cases and the schedule cases is 0.2e-6·max(1, N/64), a margin of 10.
def tolerance(N):
    return 2e-6 * max(1.0, N / 64)


def assert_faces_agree(got, want, N):
    tol = tolerance(N)
    for key in want:
        if want[key].size == 0:
            assert got[key].size == 0, key
            continue
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)
