"""``leaky bench update``, shared critic: the credit kernels and the learners they make, against
DDPG's BPTT actor step and update."""

from __future__ import annotations


import numpy as np

from leaky.bench.timing import Row, _check, _row, copy_rate, sgemm_rate, time_host


# ---------------------------------------------------------------------------------------------
# update (shared critic): the credit kernels and the learners they make, against DDPG's BPTT
# ---------------------------------------------------------------------------------------------

CREDIT_GRID = [(256, 256, 2)]           # (N, B, ℓ): TRAIN_GRID's dense network at the target size
QUICK_CREDIT_GRID = [(32, 16, 2)]
CREDIT_RULES = ("feedback", "perturb")
CREDIT_TARGET = 3.0    # shared-critic actor step and learner update over DDPG's at N = B = 256


def critic_macs(B: int, d_in: int, hidden) -> int:
    """Multiply-adds of one pass of an MLP critic ``d_in → hidden… → 1`` over B rows."""
    sizes = (d_in,) + tuple(hidden) + (1,)
    return B * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _credit_learners(N, B, ell):
    """``{rule: SharedCriticLearner}`` and a DDPGLearner on identical dense networks (3 sensors,
    1 output, λ = 0.5, the shared critic's widths and settings), each holding the same 4·B
    replayed transitions, and one sampled batch."""
    from leaky.model.config import NetworkConfig
    from leaky.learners.ddpg import DDPGLearner
    from leaky.learners.local import LocalConfig
    from leaky.model.network import Network
    from leaky.learners.shared_critic import SharedCriticLearner

    cfg = NetworkConfig(n_neurons=N, n_inputs=3, n_outputs=1, delay=ell, leak=0.5, seed=0)
    lcfg = {rule: LocalConfig(rule=rule, batch_size=B, learning_starts=0, replay_size=4 * B, seed=0)
            for rule in CREDIT_RULES}
    learners = {rule: SharedCriticLearner(Network(cfg, backend="cpu"), c) for rule, c in lcfg.items()}
    ddpg = DDPGLearner(Network(cfg, backend="cpu"), lcfg["feedback"].ddpg_config())
    rng = np.random.default_rng(0)
    no = np.zeros(B, bool)
    data = [(rng.standard_normal((B, 3)), rng.uniform(-1, 1, (B, 1)), rng.standard_normal(B),
             0.3 * rng.standard_normal((B, N)), 0.3 * rng.standard_normal((B, N))) for _ in range(4)]
    for learner in [*learners.values(), ddpg]:
        for obs, action, reward, V, V2 in data:
            learner.observe(obs, action, reward, obs + 0.01, no, no, V, V2)
    batch = ddpg.buffer.sample(B, np.random.default_rng(1))
    return learners, ddpg, batch


def _composed_faces(learner):
    """``learner`` with its kernels swapped for the composed alternatives: the tangent step's
    NumPy reference (float64 math on the float32 arrays) and credit_update_composed on NumPy."""
    from leaky.kernels import credit as ck
    from leaky.kernels import tangent as tk

    learner._tangent_face = tk.tangent_step_reference
    learner._credit_face = lambda *a: ck.credit_update_composed(np, *a)
    return learner


def bench_credit(grid=None, repeats: int = 7) -> list[Row]:
    """The shared-critic actor step's kernels (kernels/tangent, kernels/credit) against
    their composed alternatives, then whole actor steps and learner updates (rules feedback and
    perturb, k = 1 tangent) against DDPG's BPTT ones on the same network, over ``grid`` of
    (N, B, ℓ)."""
    rows = []
    for N, B, ell in CREDIT_GRID if grid is None else grid:
        rows.extend(_bench_credit_kernels(N, B, ell, repeats))
        rows.extend(_bench_credit_learners(N, B, ell, repeats))
    return rows


def _bench_credit_kernels(N, B, ell, repeats) -> list[Row]:
    from leaky.learners.ddpg import ActorParams, actor_forward
    from leaky.kernels import credit as ck
    from leaky.kernels import tangent as tk
    from leaky.kernels.scalar import adam_scalars

    learners, ddpg, batch = _credit_learners(N, B, ell)
    lr = learners["feedback"]
    net = lr.net
    n_in = net.config.n_inputs
    u = np.ascontiguousarray(net.encode(batch.obs), dtype=np.float32)
    tnet = lr._tangent_net(net.K, net.b)
    t0 = tk.first_injection(lr._tau, n_in, ell)
    nnz = int(np.sum(net.col_hi - net.col_lo))
    rate, bw = sgemm_rate(B, N), copy_rate()
    rows = []
    what = f"dense, {n_in} sensors, 1 output, λ = 0.5"

    def out_for(k):
        e = lambda *s: np.empty(s, np.float32)  # noqa: E731
        return tk.TangentOut(e(ell + 1, B, N), e(ell, B, N), e(ell, B, N), e(ell, B), e(k, B, N), e(k, B, N))

    T1 = np.random.default_rng(2).standard_normal((1, B, N)).astype(np.float32)
    forward = {}
    for k in (0, 1):
        T = T1[:k]
        out = out_for(k)
        fused = lambda: tk.tangent_step_cpu(batch.V, u, T, tnet, lr.flags, out)  # noqa: E731
        ref = lambda: tk.tangent_step_reference(batch.V, u, T, tnet, lr.flags)  # noqa: E731
        want = ref()
        m = 5 if k else 4       # Vc, z, y, scale (and Vdot)
        _check(fused()[:m], want[:m], N, f"tangent step k = {k} cpu", tk.TangentOut._fields[:m],
               tol=4e-6 * max(1.0, N / 64))
        macs = tk.tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, lr._last)
        flops = 2.0 * macs
        nbytes = 4.0 * (N * N + B * N + B * n_in + (ell + 1 + 2 * ell) * B * N + 4 * k * B * N)
        t_ref = time_host(ref, repeats)
        t_fused = time_host(fused, repeats)
        ceil = max(flops / rate, nbytes / bw)
        note = f"{what}; pruned to the decision steps: {macs / (B * nnz):.2f}·B·nnz multiply-adds"
        rows.append(_row("update", f"tangent step k={k}", "numpy", B, N, ell, t_ref, flops, nbytes,
                         ceil, t_ref, "reference (float64) as the composed step; " + note))
        rows.append(_row("update", f"tangent step k={k}", "cpu", B, N, ell, t_fused, flops, nbytes,
                         ceil, t_ref, "numba.njit, one call; " + note))
        forward[k] = (t_fused, flops, nbytes, ceil)
    # DDPG's composed forward pass (float32 NumPy): what the k = 0 step replaces for target actions
    params = ActorParams.from_network(net)
    fwd = lambda: actor_forward(params, batch.V, u, n_in, net._activation, net._inhibition,  # noqa: E731
                                net.config.kappa, net._pulse, ell, np)
    _check([fwd().V], [tk.tangent_step_reference(batch.V, u, T1[:0], tnet._replace(
        last=np.full(N, ell - 1, np.int32)), lr.flags).Vc], N, "actor_forward", ("V",))
    t_fwd = time_host(fwd, repeats)
    f_fwd = 2.0 * ell * B * nnz
    rows.append(_row("update", "actor_forward", "numpy", B, N, ell, t_fwd, f_fwd, forward[0][2],
                     max(f_fwd / rate, forward[0][2] / bw), t_fwd,
                     f"{what}; DDPG's composed forward (GEMM + elementwise per step, every neuron "
                     f"every step); tangent k=0 cpu {t_fwd / forward[0][0]:.2f}× faster"))

    for rule in CREDIT_RULES:
        learner = learners[rule]
        T, tout = learner._forward(net.K, net.b, batch.V, batch.obs, learner.k)
        rng = np.random.default_rng(3)
        n_act = learner.n_act
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        cb = ck.CreditBatch(tout.Vc, tout.y, tout.scale, T, f32(tout.Vdot[:, :, N - n_act:]),
                            f32(rng.standard_normal((B, n_act))), f32(rng.uniform(0, 1, (B, n_act))))
        sc = ck.CreditScalars(n_in, net._activation, learner.rule, 0.01, *adam_scalars(1e-3, 5),
                              0.9, 0.999, True)

        agents = (np.arange(N) >= n_in).astype(np.float32)

        def fresh():   # a mid-run Adam state (see tests/kernels/test_credit.py), copies each time;
            g = np.random.default_rng(4)   # 0 where G is: the composed update steps whole arrays
            on = net.mask * agents[:, None]
            return ck.CreditParams(net.K.copy(), net.b.copy(), f32(0.1 * g.standard_normal((N, n_act))),
                                   f32(1e-3 * g.standard_normal((N, N)) * on),
                                   f32(g.uniform(1e-5, 2e-5, (N, N)) * on),
                                   f32(1e-3 * g.standard_normal(N) * agents),
                                   f32(g.uniform(1e-5, 2e-5, N) * agents))

        def grads():
            return ck.CreditGrads(np.empty((N, N), np.float32), np.empty(N, np.float32))

        p64 = ck.CreditParams(*(np.asarray(a, np.float64) for a in fresh()))
        o64 = ck.CreditGrads(np.empty((N, N)), np.empty(N))
        ck.credit_update_reference(cb, p64, learner.top, sc, o64)
        pc, oc, pn, on = fresh(), grads(), fresh(), grads()
        fused = lambda: ck.credit_update_cpu(cb, pc, learner.top, sc, oc)  # noqa: E731
        comp = lambda: ck.credit_update_composed(np, cb, pn, learner.top, sc, on)  # noqa: E731
        names = ("K", "bias", "F", "G", "Gb")
        tol = 2.0 ** -24 * max(16, B + N + learner.k) * 4
        for fn, name, p, o in ((fused, "cpu", pc, oc), (comp, "composed", pn, on)):
            fn()
            _check([p.K, p.bias, p.F, o.G, o.Gb], [p64.K, p64.bias, p64.F, o64.G, o64.Gb], N,
                   f"credit update {rule} {name}", names, tol)
        macs = ck.credit_work(B, learner.k, N, n_act, nnz)
        flops = 2.0 * macs
        nbytes = 4.0 * ((ell + 1 + ell + learner.k) * B * N + 8 * N * N)
        ceil = max(flops / rate, nbytes / bw)
        t_comp = time_host(comp, repeats)
        t_fused = time_host(fused, repeats)
        note = f"{what}; rule {rule}, k = {learner.k}, Adam applied"
        rows.append(_row("update", "credit update", "numpy", B, N, ell, t_comp, flops, nbytes, ceil,
                         t_comp, f"credit_update_composed (one GEMM per decision step); {note}"))
        rows.append(_row("update", "credit update", "cpu", B, N, ell, t_fused, flops, nbytes, ceil,
                         t_comp, f"numba.njit, one call; {note}"))
    return rows


def _bench_credit_learners(N, B, ell, repeats) -> list[Row]:
    from leaky.kernels import tangent as tk

    learners, ddpg, batch = _credit_learners(N, B, ell)
    composed = {rule: _composed_faces(l) for rule, l in _credit_learners(N, B, ell)[0].items()}
    net = ddpg.net
    n_in = net.config.n_inputs
    nnz = int(np.sum(net.col_hi - net.col_lo))
    hidden = ddpg.cfg.hidden
    crit = critic_macs(B, n_in + 1, hidden)
    t0 = tk.first_injection(learners["feedback"]._tau, n_in, ell)
    last = learners["feedback"]._last
    # counts: DDPG's actor step ℓ forward + 2ℓ backward GEMMs; the credit step its two kernels;
    # both a critic forward and backward (inputs only); updates add a target action and the
    # critic's TD step (forward, backward with parameter gradients: about 3 passes)
    d_actor = 3 * ell * B * nnz + 2 * crit
    d_update = d_actor + ell * B * nnz + 4 * crit
    rows = []

    # the same first step on the kernels and on the composed faces: G within float32 accuracy,
    # K within one Adam step (from zero moments a gradient within rounding of 0 takes either sign)
    for rule, learner in learners.items():
        ref = composed[rule]
        learner.actor_step(batch)
        ref.actor_step(batch)
        _check([learner.G], [np.asarray(ref.G, np.float64)], N, f"{rule} actor step G", ("G",),
               tol=2e-5 * max(1.0, N / 64))
        step = 2.0 * learner.local.lr_actor * 1.01
        err = float(np.abs(learner.net.K.astype(np.float64) - ref.net.K).max())
        if not err <= step:
            raise AssertionError(f"bench {rule} actor step: K differs from the composed faces' by "
                                 f"{err:.2e} > one step {step:.1e}")

    t_ddpg_actor = time_host(lambda: ddpg.actor_step(batch), repeats)
    t_ddpg_update = time_host(ddpg.update, repeats)
    params = nnz + N
    ddpg_note = f"{params} actor params, critic {'-'.join(map(str, hidden))}, BPTT through ℓ = {ell}"
    rows.append(_row("update", "ddpg actor step", "cpu", B, N, ell, t_ddpg_actor, 2.0 * d_actor, 0.0,
                     None, None, ddpg_note, samples_per_s=B / t_ddpg_actor, vs_baseline=1.0))
    rows.append(_row("update", "ddpg learner update", "cpu", B, N, ell, t_ddpg_update,
                     2.0 * d_update, 0.0, None, None, ddpg_note, samples_per_s=B / t_ddpg_update,
                     vs_baseline=1.0))
    for rule, learner in learners.items():
        k = learner.k
        c_actor = (tk.tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, last)
                   + B * nnz + k * B * N + 2 * crit)
        c_update = c_actor + tk.tangent_work(B, 0, ell, t0, net.col_lo, net.col_hi, last) + 4 * crit
        for kind, t_base, macs, fn, comp_fn in (
                ("actor step", t_ddpg_actor, c_actor, lambda: learner.actor_step(batch),
                 lambda: composed[rule].actor_step(batch)),
                ("learner update", t_ddpg_update, c_update, learner.update, composed[rule].update)):
            t_comp = time_host(comp_fn, repeats)
            t = time_host(fn, repeats)
            target = ""
            if (N, B, ell) == (256, 256, 2):
                target = (f"; target ≥ {CREDIT_TARGET:g}× ddpg: "
                          f"{'met' if t_base / t >= CREDIT_TARGET else 'not met'}")
            note = f"rule {rule}, k = {k}, same network and critic as ddpg"
            rows.append(_row("update", f"{rule} {kind}", "numpy", B, N, ell, t_comp, 2.0 * macs, 0.0,
                             None, t_comp, f"{note}; composed faces (tangent reference, "
                             f"credit_update_composed)", samples_per_s=B / t_comp,
                             vs_baseline=t_base / t_comp))
            rows.append(_row("update", f"{rule} {kind}", "cpu", B, N, ell, t, 2.0 * macs, 0.0, None,
                             t_comp, f"{note}; numba.njit faces{target}", samples_per_s=B / t,
                             vs_baseline=t_base / t))
    return rows
