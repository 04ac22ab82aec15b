"""The cuda faces on a real GPU (CuPy arrays), against the float64 reference.

Skipped without a GPU (conftest); run on a lent device with ``python -m pytest -q -m gpu``.
"""

import numpy as np
import pytest

from tests.kernels.step_cases import assert_faces_agree, random_step_case, run_face
from tests.training.training_cases import TRAINS_OPTIONS, assert_learned, short_run

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("B, N, delay, topology, inhibition, input_mode", [
    (1, 1, 1, "dense", "none", "clamp"),
    (1, 33, 3, "dense", "divisive", "pulse"),
    (9, 65, 2, "sparse", "none", "clamp"),
    (257, 130, 5, "dense", "divisive", "clamp"),
    (64, 300, 3, "layered", "none", "clamp"),
])
def test_cuda_step_matches_reference(B, N, delay, topology, inhibition, input_mode):
    rng = np.random.default_rng(B + N)
    n_in = 0 if N == 1 else 3
    cfg, V0, obs, xi = random_step_case(rng, B, N, n_in, 1, delay, topology=topology,
                                        inhibition=inhibition, input_mode=input_mode)
    want, a_want = run_face("numpy", cfg, V0, obs, xi)
    got, a_got = run_face("cuda", cfg, V0, obs, xi)
    assert_faces_agree(got, want, N)
    np.testing.assert_allclose(a_got, a_want, atol=1e-5)


def test_cuda_network_uses_cupy_arrays():
    import cupy as cp

    from leaky import Network

    net = Network.layered([3, 16, 1], backend="cuda")
    V, action, cache = net.step(net.reset(4), np.zeros((4, 3)))
    assert isinstance(V, cp.ndarray) and isinstance(cache.alpha, cp.ndarray)


def on_device(face):
    """``face`` run on CuPy copies of its NumPy arguments, results copied back in place."""
    def run(*args):
        import cupy as cp

        dev = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        face(*dev)
        cp.cuda.get_current_stream().synchronize()
        for a, d in zip(args, dev):
            if isinstance(a, np.ndarray):
                a[...] = d.get()
    return run


@pytest.mark.parametrize("B, N, ell, n_in, clock, view, family, baseline", [
    (1, 3, 1, 1, "causal", "all", "advantage", "own"),
    (256, 130, 2, 3, "causal", "all", "advantage", "own"),
    (33, 65, 3, 2, "internal", "presynaptic", "linear", "own"),
    (64, 97, 2, 4, "causal", "all", "advantage", "dopamine"),
])
def test_cuda_local_update_matches_reference(B, N, ell, n_in, clock, view, family, baseline):
    from leaky.kernels import update_local as ul
    from tests.kernels.update_local_cases import assert_faces_agree, random_update_case, run_face

    rng = np.random.default_rng(B + N)
    args, params, cfg, flags = random_update_case(rng, B, N, ell, n_in, clock, view, family, baseline)
    want = run_face(ul.update_local_reference, args, params, cfg, flags)
    got = run_face(on_device(ul.update_local_cuda), args, params, cfg, flags)
    assert_faces_agree(got, want, args)


@pytest.mark.parametrize("B, N, H, ell, n_in", [(1, 3, 1, 1, 1), (64, 70, 16, 2, 3), (16, 33, 64, 3, 2)])
def test_cuda_mlp_update_matches_reference(B, N, H, ell, n_in):
    from leaky.kernels import update_mlp as um
    from tests.kernels.update_mlp_cases import assert_faces_agree, random_mlp_case, run_face, tolerance

    rng = np.random.default_rng(B + N + H)
    args, params, cfg, flags = random_mlp_case(rng, B, N, H, ell, n_in)
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    got = run_face(on_device(um.update_mlp_cuda), args, params, cfg, flags)
    assert_faces_agree(got, want, tolerance(args, H))


@pytest.mark.parametrize("rule", sorted(TRAINS_OPTIONS))
def test_local_learner_trains_on_the_gpu(rule, tmp_path):
    """A whole local-learner run on the cuda backend, CuPy arrays end to end, and the same run on
    the cpu backend: both update as often, report finite metrics of the same names, and their
    updates move the weights by comparable amounts (within 3× of each other: CuPy's generator
    draws other noise than NumPy's, so the runs' numbers are not comparable one by one; the
    faces are compared number for number in the kernel tests above and in tests/cudasim)."""
    cuda, moved_cuda = short_run("cuda", TRAINS_OPTIONS[rule], tmp_path)
    cpu, moved_cpu = short_run("cpu", TRAINS_OPTIONS[rule], tmp_path)
    assert_learned(cuda, moved_cuda)
    assert_learned(cpu, moved_cpu)
    assert cuda.updates == cpu.updates
    assert set(cuda.metrics[0]) == set(cpu.metrics[0])
    assert 1 / 3 < moved_cuda["K"] / moved_cpu["K"] < 3, (moved_cuda, moved_cpu)


def _graphed_run(capture, steps=6, B=4):
    """A few steps of the graphed learner on fixed inputs; returns actions and final parameters."""
    import cupy as cp

    from leaky import Network
    from leaky.learners.graph import GraphedLocalLearner
    from leaky.learners.local import LocalConfig

    net = Network.layered([3, 33, 40, 1], backend="cuda", delay=3, seed=2)
    g = GraphedLocalLearner(net, LocalConfig(rule="critic", graph=True, lr_actor=1e-2, seed=1))
    rng = np.random.default_rng(0)
    V, actions = net.reset(B), []
    for t in range(steps):
        obs = rng.uniform(-1, 1, (B, 3))
        V_end, a = g.act(V, obs)
        if t == 0:
            for p in g.act_programs + g.boot_programs + g.learn_programs:
                p.capture = capture
        trunc = np.array([t == 3] + [False] * (B - 1))
        g.observe(obs, a, rng.normal(size=B), rng.uniform(-1, 1, (B, 3)), np.zeros(B, bool), trunc, V, V_end)
        g.update()
        actions.append(cp.asnumpy(a))
        V = V_end.copy()
        V[cp.asarray(trunc)] = 0
    return g, np.array(actions), cp.asnumpy(net.K), cp.asnumpy(g.theta)


def test_captured_graphs_replay_what_the_eager_programs_compute():
    g, a_graph, K_graph, th_graph = _graphed_run(capture=True)
    _, a_eager, K_eager, th_eager = _graphed_run(capture=False)
    assert g.act_programs[0].graph is not None and g.learn_programs[0].graph is not None
    np.testing.assert_array_equal(a_graph, a_eager)      # same kernels, same inputs: bit for bit
    np.testing.assert_array_equal(K_graph, K_eager)
    np.testing.assert_array_equal(th_graph, th_eager)
    for p in g.act_programs + g.learn_programs:
        assert p.kernel_nodes() == len(p)                  # the capture holds exactly the launches


def test_graphed_training_run_on_the_gpu():
    from leaky.training.loop import TrainConfig, train

    r = train(TrainConfig(env="Pendulum-v1", learner="local", backend="cuda", steps=400, n_envs=4,
                          eval_every=400, eval_episodes=1, hidden=(16,), progress=False,
                          learner_options={"rule": "critic", "graph": True}))
    assert np.isfinite(r.final_eval) and r.updates == 400 // 4 - 1
