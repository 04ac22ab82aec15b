"""Inputs of awkward shapes for the step kernel, shared by every face's tests and the bench."""

import numpy as np

from leaky.model.config import NetworkConfig
from leaky.model.network import Network


def random_step_case(rng, B, N, n_inputs, n_outputs, delay, topology="dense", leak=None,
                     activation="tanh", inhibition="none", input_mode="clamp", noise=0.3, seed=0):
    """A config, carried voltages, observations and noise drawn from ``rng`` (float64)."""
    if leak is None:
        leak = tuple(rng.uniform(0.05, 1.0, size=N))
    extra = {}
    if topology == "sparse":
        extra["fan_in"] = max(1, N // 3)
    if topology == "layered":
        hidden = N - n_inputs - n_outputs
        sizes = [n_inputs] + ([hidden] if hidden else []) + [n_outputs]
        extra["layer_sizes"] = tuple(sizes)
        delay = len(sizes) - 1
    cfg = NetworkConfig(n_neurons=N, n_inputs=n_inputs, n_outputs=n_outputs, delay=delay,
                        leak=leak, activation=activation, inhibition=inhibition,
                        kappa=0.7, input_mode=input_mode, topology=topology, seed=seed,
                        weight_scale=1.5, **extra)
    Network(cfg, backend="numpy")  # raises ConfigError now if the mask cuts an output off
    V0 = rng.standard_normal((B, N))
    obs = rng.standard_normal((B, n_inputs))
    xi = noise * rng.standard_normal((cfg.delay, B, N))
    return cfg, V0, obs, xi


def run_face(backend, cfg, V0, obs, xi, bias=None):
    """Step once on ``backend``; returns the cache as float64 NumPy arrays and the action."""
    net = Network(cfg, backend=backend)
    if bias is not None:
        net.set_parameters(b=bias)
    dtype = net.backend.dtype
    _, action, cache = net.step(V0.astype(dtype), obs.astype(dtype), xi.astype(dtype))
    from leaky.core.backend import to_numpy

    return {k: to_numpy(getattr(cache, k)).astype(np.float64) for k in ("V", "z", "y", "alpha")}, \
        to_numpy(action).astype(np.float64)


# float32 faces against the float64 reference: each pre-activation sums up to N products of
# O(1) terms, relative rounding ~ N·2⁻²⁴ at worst, and ℓ ≤ 5 contracting steps (|σ'| ≤ 1,
# λ ≤ 1) do not amplify it: atol 2e-5·max(1, N/64) holds with margin for N ≤ 200.
def tolerance(N):
    return 2e-5 * max(1.0, N / 64)


def assert_faces_agree(got, want, N):
    tol = tolerance(N)
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)
