"""Shared case builders of the MLP-critic update tests: random inputs of one update, a face run
on copies, and the float32 tolerance against the float64 reference (tests/kernels/test_update_mlp.py,
tests/cudasim/test_update_mlp_cuda.py, tests/bench, tests/test_gpu.py)."""

import numpy as np

from leaky.kernels import update_mlp as um
from leaky.learners.critics import MLPUpdateConfig, init_mlp_critics
from tests.kernels.update_local_cases import call_update, mid_run_params, random_transitions

MUTABLE = ("K", "bias", "theta", "theta_bar", "adam_m", "adam_v")
OUTPUTS = MUTABLE + ("diag",)
ARGS = ("Vs", "ys", "alphas", "Vn", "yn", "r", "cont", "tau", "mask", "col_lo", "col_hi")
ACT = {0: np.tanh, 1: lambda y: np.maximum(y, 0.0), 2: lambda y: y}
DACT = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0) * 1.0, 2: lambda y: 1.0 + 0 * y}


def _f32(a):
    """Values representable in float32, held in float64: every face sees the same inputs."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def random_mlp_case(rng, B, N, H, ell, n_inputs, clock="causal", view="all", optimizer="adam",
                    activation=0, actor=True, density=0.6, step=3, **overrides):
    """Inputs of one MLP-critic update drawn from ``rng``: ``(args, params, cfg, flags)``.

    ``args`` are read-only, ``params`` updated in place (float64 values float32 represents
    exactly). Weights are twice the initialiser's scale (hidden units away from linear) and the
    learning rates large, so that every update is visible.
    """
    args = random_transitions(rng, B, N, ell, clock, activation, density, delta=False)
    theta = 2.0 * init_mlp_critics(N, H, rng).theta
    params = mid_run_params(rng, args["mask"], theta)
    hyper = dict(view=view, optimizer=optimizer, lr_critic=0.05, lr_actor=0.2, tau_soft=0.3,
                 beta1=0.8, beta2=0.95, eps=1e-6, actor=actor)
    hyper.update(overrides)
    return args, params, MLPUpdateConfig(**hyper), dict(n_inputs=n_inputs, activation=activation,
                                                        step=step)


def run_face(face, args, params, cfg, flags, dtype=None, **kw):
    """Run one face on copies (float32 for cpu/cuda unless ``dtype``, float64 for the
    reference); returns the updated arrays in float64."""
    if dtype is None:
        dtype = np.float64 if face is um.update_mlp_reference else np.float32
    a = {k: (v if v.dtype.kind == "i" else np.ascontiguousarray(v, dtype=dtype))
         for k, v in args.items()}
    p = {k: np.array(v, dtype=dtype, order="C") for k, v in params.items()}  # copies
    call_update(face, a, p, cfg, flags["n_inputs"], flags["activation"], flags["step"], **kw)
    return {k: v.astype(np.float64) for k, v in p.items()}


def tolerance(args, H):
    """atol per unit of output magnitude, float32 face vs float64 reference.

    Every output is its input plus a step of O(lr) times means over S transitions of products
    of O(1) factors: a forward pass through dot products of N+1 and H terms, a backward pass
    through H terms, and about 30 roundings on the way from the inputs to an Adam moment. A
    float32 sum of k terms is off by about k·2⁻²⁴ relative, so (N + H + S + 32)·2⁻²⁴ is the unit;
    on 3000 random cases the worst output (adam_v, which squares the gradient) was 0.36 units,
    so 2 units leave a margin without hiding a wrong index (which shows as O(lr) ≈ 1e-2).
    """
    T, B, N = args["Vs"].shape
    S = (T if args["tau"].min() < 0 else 1) * B
    return 2.0 * 2.0 ** -24 * (N + H + S + 32)


def assert_faces_agree(got, want, tol):
    for key in OUTPUTS:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)


def hidden_of(params):
    return um.mlp_hidden(params["theta"].shape[0], params["theta"].shape[1])
