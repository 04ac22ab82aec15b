"""Shared case builders of the credit-update tests: random inputs, faces run on copies and the
float32 tolerance (tests/kernels/test_credit.py, tests/cudasim/test_credit_cuda.py)."""

import numpy as np

from leaky.kernels import credit as ck
from leaky.kernels.data import Topology
from leaky.kernels.scalar import adam_scalars
from leaky.model.config import NetworkConfig
from leaky.model.network import Network

FACES = {"numpy": ck.credit_update_reference, "cpu": ck.credit_update_cpu}
PARAMS = ck.CreditParams._fields
OUTPUTS = PARAMS + ("G", "Gb")
DACT = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0) * 1.0, 2: lambda y: 1.0 + 0 * y}


def _f32(a):
    """Values float32 represents exactly, held in float64: every face sees the same inputs."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def random_credit_case(rng, B, N, n_in, n_out, ell, k, topology="dense", activation=0, rule=0,
                       apply=True, tau="decision", seed=0, moments_off_mask=False):
    """``(batch, params, top, sc)`` of one credit update, float64 arrays of float32 values.

    The mask, its ranges and the decision steps come from a Network of ``topology``
    (``layered``: one hidden layer, ℓ = 2), or ``tau="random"`` in [0, ℓ). Adam's moments are a
    mid-run state (v well above g²·(1−β₂), zero off the mask as the learner keeps them): there
    the step is a smooth function of the gradient, so float32 rounding cannot flip its sign the
    way m̂/√v̂ = ±1 at zero moments would. ``moments_off_mask``: non-zero moments off the mask
    too (where G is 0, so only the mask keeps Adam from moving K there).
    """
    extra = {}
    if topology == "sparse":
        extra["fan_in"] = max(1, N // 3)
    if topology == "layered":
        hidden = N - n_in - n_out
        extra["layer_sizes"] = (n_in,) + ((hidden,) if hidden else ()) + (n_out,)
        ell = len(extra["layer_sizes"]) - 1
    cfg = NetworkConfig(n_neurons=N, n_inputs=n_in, n_outputs=n_out, delay=ell, topology=topology,
                        seed=seed, **extra)
    net = Network(cfg, backend="numpy")   # raises ConfigError if a sparse mask cuts an output off
    mask = net.mask_np
    taus = (net.decision_step if tau == "decision" else rng.integers(0, ell, size=N)).astype(np.int32)
    batch = ck.CreditBatch(
        Vc=_f32(rng.uniform(-1, 1, (ell + 1, B, N))),
        y=_f32(rng.standard_normal((ell, B, N))),
        scale=_f32(rng.uniform(0.5, 1.0, (ell, B))),
        T=_f32(rng.standard_normal((k, B, N))),
        adot=_f32(rng.standard_normal((k, B, n_out))),
        g=_f32(rng.standard_normal((B, n_out))),
        dadv=_f32(rng.uniform(0.0, 1.0, (B, n_out))))
    moment_mask = 1.0 if moments_off_mask else mask
    params = ck.CreditParams(
        K=_f32(rng.standard_normal((N, N)) * mask),
        bias=_f32(0.3 * rng.standard_normal(N)),
        F=_f32(rng.standard_normal((N, n_out)) / np.sqrt(n_out)),
        mK=_f32(0.05 * rng.standard_normal((N, N)) * moment_mask),
        vK=_f32(rng.uniform(0.01, 0.05, (N, N)) * moment_mask),
        mb=_f32(0.05 * rng.standard_normal(N)),
        vb=_f32(rng.uniform(0.01, 0.05, N)))
    top = Topology(taus, mask, net.col_lo, net.col_hi)
    step_size, eps_hat = adam_scalars(0.05, 3, 0.8, 0.95, 1e-6)
    sc = ck.CreditScalars(n_in, activation, rule, 0.3, step_size, eps_hat, 0.8, 0.95, apply)
    return batch, params, top, sc


def to_face(face, batch, params, top):
    """The inputs as the face takes them (float32 C arrays; the reference: float64 copies)."""
    dtype = np.float64 if face == "numpy" else np.float32
    conv = lambda a: np.array(a, dtype=dtype, order="C")  # noqa: E731
    mask = top.mask.astype(np.float32)
    return (ck.CreditBatch(*map(conv, batch)), ck.CreditParams(*map(conv, params)),
            top._replace(mask=mask))


def run_updates(face, batch, params, top, sc, steps=1, xp=np):
    """``steps`` consecutive updates of ``face`` from the same state (Adam's step advancing),
    the batch unchanged; returns the float64 state after each as a list of dicts."""
    fn = FACES[face] if isinstance(face, str) else face
    b, p, t = to_face(face, batch, params, top)
    if xp is not np:
        b, p, t = (type(x)(*map(xp.asarray, x)) for x in (b, p, t))
    N = batch.Vc.shape[2]
    dtype = np.float64 if face == "numpy" else np.float32
    out = ck.CreditGrads(xp.full((N, N), np.nan, dtype=dtype), xp.full(N, np.nan, dtype=dtype))
    states = []
    for step in range(3, 3 + steps):
        step_size, eps_hat = adam_scalars(0.05, step, sc.beta1, sc.beta2, 1e-6)
        fn(b, p, t, sc._replace(step_size=step_size, eps_hat=eps_hat), out)
        host = lambda a: np.array(a.get() if hasattr(a, "get") else a, dtype=np.float64)  # noqa: E731
        states.append({**{name: host(a) for name, a in zip(PARAMS, p)},
                       "G": host(out.G), "Gb": host(out.Gb)})
    return states


# float32 faces against the float64 reference. G sums B products of O(1) terms (relative
# rounding up to B·2⁻²⁴) and each e up to k·n_out more; F the feedback rule's k·B terms; Adam's
# step m/(√v + ε̂) amplifies an error of G by at most (1−β₁)/√v ≈ 0.2/0.1 at v ≥ 0.01, times
# the step size. atol 2⁻²⁴·max(16, B + N + k), relative to each array's largest |value|:
# the worst seen over 300 random cases of 3 updates is a fifth of it.
def tolerance(B, N, k):
    return 2.0 ** -24 * max(16, B + N + k)


def assert_faces_agree(got, want, B, N, k):
    tol = tolerance(B, N, k)
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)
