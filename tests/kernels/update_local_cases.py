"""Shared case builders of the local-update tests: random inputs of one update, a face run on
copies, and the float32 tolerance against the float64 reference (tests/kernels/test_update_local.py,
tests/cudasim/test_update_local_cuda.py, tests/bench, tests/test_gpu.py)."""

import numpy as np

from leaky.kernels import update_local as ul
from leaky.kernels.data import ActorRows, CriticState, Topology, Transitions, UpdateOut
from leaky.kernels.update_local import critic_layout
from leaky.learners.critics import UpdateConfig

MUTABLE = ("K", "bias", "theta", "theta_bar", "adam_m", "adam_v")
OUTPUTS = MUTABLE + ("diag",)
ACT = {0: np.tanh, 1: lambda y: np.maximum(y, 0.0), 2: lambda y: y}
DACT = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0) * 1.0, 2: lambda y: 1.0 + 0 * y}


def _f32(a):
    """Values representable in float32, held in float64: every face sees the same inputs."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def column_ranges(mask):
    """The half-open range of non-zero columns of each row of ``mask`` (0, 0 for an empty row)."""
    nz = mask != 0
    any_nz = nz.any(axis=1)
    N = mask.shape[1]
    col_lo = np.where(any_nz, nz.argmax(axis=1), 0).astype(np.int32)
    col_hi = np.where(any_nz, N - nz[:, ::-1].argmax(axis=1), 0).astype(np.int32)
    return col_lo, col_hi


def random_transitions(rng, B, N, ell, clock, activation, density, delta):
    """The read-only arrays of one update drawn from ``rng``: a random mask (the last neuron
    without inputs), its column ranges, the slices of ``clock`` and (ℓ, B, N) transitions whose
    actions are σ(y) plus noise; with ``delta``, a shared TD error too."""
    mask = (rng.uniform(size=(N, N)) < density).astype(np.float64)
    if N > 2:
        mask[N - 1] = 0.0            # a neuron without inputs (empty presynaptic range)
    col_lo, col_hi = column_ranges(mask)
    if clock == "causal":
        tau = rng.integers(0, ell, size=N).astype(np.int32)
    else:
        tau = np.full(N, -1, dtype=np.int32)
    ys = rng.standard_normal((ell, B, N))
    args = dict(
        Vs=_f32(rng.uniform(-1, 1, (ell, B, N))),
        ys=_f32(ys),
        alphas=_f32(ACT[activation](ys) + 0.3 * rng.standard_normal((ell, B, N))),
        Vn=_f32(rng.uniform(-1, 1, (ell, B, N))),
        yn=_f32(rng.standard_normal((ell, B, N))),
        r=_f32(rng.standard_normal((ell, B))),
        cont=_f32(rng.uniform(0, 1, (ell, B))))
    if delta:
        args["delta"] = _f32(rng.standard_normal((ell, B)))
    return dict(args, tau=tau, mask=mask, col_lo=col_lo, col_hi=col_hi)


def mid_run_params(rng, mask, theta):
    """The arrays an update steps, drawn from ``rng`` around the critic rows ``theta``: weights
    on the mask, biases, a nearby target and a mid-run Adam state (v well above g²·(1−β₂): the
    step is a smooth function of the gradient, so float32 rounding cannot flip a sign the way
    m̂/√v̂ at t = 1 would); float64 values float32 represents exactly, diag NaN."""
    N = mask.shape[0]
    return dict(
        K=_f32(rng.standard_normal((N, N)) * mask),
        bias=_f32(0.3 * rng.standard_normal(N)),
        theta=_f32(theta),
        theta_bar=_f32(theta + 0.1 * rng.standard_normal(theta.shape)),
        adam_m=_f32(0.05 * rng.standard_normal(theta.shape)),
        adam_v=_f32(rng.uniform(0.01, 0.05, theta.shape)),
        diag=np.full((N, 3), np.nan))


def random_update_case(rng, B, N, ell, n_inputs, clock="causal", view="all", family="advantage",
                       baseline="own", optimizer="adam", activation=0, density=0.6, step=3,
                       **overrides):
    """Inputs of one local update drawn from ``rng``: ``(args, params, cfg, flags)``.

    ``args`` are the read-only arrays, ``params`` the ones updated in place (float64 values that
    float32 represents exactly). Learning rates are large so that every update is visible.
    """
    args = random_transitions(rng, B, N, ell, clock, activation, density, delta=True)
    lay = critic_layout(N)
    theta = 0.3 * rng.standard_normal((N, lay.width))
    theta[:, lay.h] = -np.abs(theta[:, lay.h])
    params = mid_run_params(rng, args["mask"], theta)
    hyper = dict(family=family, view=view, baseline=baseline, optimizer=optimizer,
                 lr_critic=0.05, lr_actor=0.2, tau_soft=0.3, beta1=0.8, beta2=0.95, eps=1e-6)
    hyper.update(overrides)
    return args, params, UpdateConfig(**hyper), dict(n_inputs=n_inputs, activation=activation,
                                                        step=step)


def call_update(face, a, p, cfg, n_inputs, activation, step, work=None, **kw):
    """``face(tr, top, actor, critic, sc, out)`` on the arrays of ``a`` (read) and ``p`` (stepped
    in place; ``adam_m``/``adam_v`` may be absent or None), with ``cfg.scalars`` of the step."""
    tr = Transitions(a["Vs"], a["ys"], a["alphas"], a["Vn"], a["yn"], a["r"], a["cont"], a.get("delta"))
    top = Topology(a["tau"], a["mask"], a["col_lo"], a["col_hi"])
    critic = CriticState(p["theta"], p["theta_bar"], p.get("adam_m"), p.get("adam_v"))
    return face(tr, top, ActorRows(p["K"], p["bias"]), critic, cfg.scalars(n_inputs, activation, step),
                UpdateOut(p["diag"], work), **kw)


def run_face(face, args, params, cfg, flags, **kw):
    """Run one face on copies (float32 for cpu/cuda, float64 for the reference): float64 out.
    ``kw`` goes to the face (``work``: its ``UpdateOut.work``)."""
    dtype = np.float64 if face is ul.update_local_reference else np.float32
    a = {k: (v if v.dtype.kind == "i" else np.ascontiguousarray(v, dtype=dtype))
         for k, v in args.items()}
    p = {k: np.array(v, dtype=dtype, order="C") for k, v in params.items()}  # copies
    call_update(face, a, p, cfg, flags["n_inputs"], flags["activation"], flags["step"], **kw)
    return {k: v.astype(np.float64) for k, v in p.items()}


def tolerance(args):
    """atol per unit of output magnitude, float32 face vs float64 reference.

    Each output is its input plus a step of O(lr) times means over S transitions of products
    of O(1) factors with dot products over ≤ N features. A sequential float32 sum of k such
    terms is off by at most about k·2⁻²⁴ relative, so (N + S)·2⁻²⁴ (at least 32·2⁻²⁴ ≈ 2e-6)
    bounds the error of the dot products and the means together; the cuda face's tree sums do
    better. Measured on 300 random cases: at most a tenth of it.
    """
    T, B, N = args["Vs"].shape
    return 2.0 ** -24 * max(32, N + T * B)


def assert_faces_agree(got, want, args):
    tol = tolerance(args)
    for key in OUTPUTS:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)
