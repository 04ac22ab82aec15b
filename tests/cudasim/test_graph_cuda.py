"""The fixed per-step programs of leaky.learners.graph in Numba's CUDA simulator.

The simulator has no CUDA graphs, so the programs run eagerly: what is checked here is that the
launch sequence a graph would capture computes what the eager learner computes, step for step,
through episode ends (termination and truncation with its bootstrap step), on both clocks.
Tolerance: both learners run the same float32 update kernel; only the way the transitions are
assembled differs (a kernel against NumPy copies), so parameters agree to float32 rounding.
"""

import numpy as np
import pytest

from leaky.learners.graph import GraphedLocalLearner
from leaky.kernels import noise
from leaky.kernels import loop as lk
from leaky.kernels.spec import run
from leaky.learners.local import LocalConfig, LocalLearner
from leaky.model.network import Network

pytestmark = pytest.mark.cudasim


def test_noise_kernel_matches_cpu_twin():
    std = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    got = np.empty(7, dtype=np.float32)
    blocks, threads = lk.grid_for(got.size)
    run(noise.fill_normal_launch(11, 1, np.array([4], dtype=np.int64), std, got, blocks, threads))
    want = noise.fill_normal_cpu(np.uint32(11), np.uint32(1), 4, std, np.empty(7, dtype=np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _pair(clock, delay):
    cfg = LocalConfig(rule="critic", clock=clock, noise_std=0.3, lr_actor=1e-2, lr_critic=1e-2, reward_scale=0.5, seed=3)
    nets = [Network.layered([2, 3, 1], backend="cuda", delay=delay, seed=5) for _ in range(2)]
    return GraphedLocalLearner(nets[0], cfg), LocalLearner(nets[1], cfg)


@pytest.mark.parametrize("clock, delay", [("causal", 2), ("internal", 3)])
def test_programs_match_the_eager_learner(clock, delay):
    graphed, eager = _pair(clock, delay)
    queue = []
    eager.net.sample_noise = lambda rng, batch, std: queue.pop(0)
    rng = np.random.default_rng(0)
    B = 2
    V_g = V_e = graphed.net.reset(B)
    ends = {2: ([False, False], [True, False]), 3: ([False, True], [False, False])}   # step: (term, trunc)
    for t in range(5):
        obs = rng.uniform(-1, 1, (B, 2)).astype(np.float32)
        reward = rng.normal(size=B).astype(np.float32)
        term, trunc = (np.array(x) for x in ends.get(t, ([False, False], [False, False])))
        final_obs = rng.uniform(-1, 1, (B, 2)).astype(np.float32)

        V_end_g, a_g = graphed.act(V_g, obs)
        queue.append(graphed.last_noise.copy())
        V_end_e, a_e = eager.act(V_e, obs)
        np.testing.assert_allclose(a_g, a_e, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(V_end_g, V_end_e, rtol=1e-5, atol=1e-6)

        graphed.observe(obs, a_g, reward, final_obs, term, trunc, V_g, V_end_g)
        if (trunc & ~term).any():
            queue.append(graphed.buf.xi_boot.copy())
        eager.observe(obs, a_e, reward, final_obs, term, trunc, V_e, V_end_e)
        m_g, m_e = graphed.update(), eager.update()
        assert m_g.keys() == m_e.keys()
        for k in m_g:
            assert m_g[k] == pytest.approx(m_e[k], rel=1e-4, abs=1e-6)
        done = term | trunc
        V_g, V_e = V_end_g.copy(), V_end_e.copy()
        V_g[done] = 0.0
        V_e[done] = 0.0
    assert not queue
    assert graphed.updates == eager.updates == 4
    for name in ("theta", "theta_bar", "adam_m", "adam_v"):
        np.testing.assert_allclose(getattr(graphed, name), getattr(eager, name), rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(graphed.net.K, eager.net.K, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graphed.net.b, eager.net.b, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(graphed.net.K, Network.layered([2, 3, 1], backend="cuda", delay=delay, seed=5).K)
    assert int(graphed.adam_step_dev[0]) == graphed.adam_step == 4


def test_launch_count_does_not_depend_on_delay_or_size():
    counts = set()
    for sizes, delay in (([2, 3, 1], 1), ([3, 40, 2], 4)):
        g = GraphedLocalLearner(Network.layered(sizes, backend="cuda", delay=delay), LocalConfig(rule="critic"))
        g._ensure(3)
        counts.add(tuple(sorted(g.launches_per_step.items())))
    assert counts == {(("act", 3), ("boot", 2), ("learn", 2))}


def test_checkpoint_restores_the_device_counters():
    graphed, _ = _pair("causal", 2)
    obs = np.zeros((1, 2), dtype=np.float32)
    V = graphed.net.reset(1)
    for _ in range(2):
        V, a = graphed.act(V, obs)
        graphed.observe(obs, a, [1.0], obs, [False], [False], V, V)
        graphed.update()
    state = graphed.state_dict()
    assert state["noise_counter"] == 2 and state["adam_step"] == 1
    other, _ = _pair("causal", 2)
    other.load_state_dict(state)
    assert int(other.counter[0]) == 2 and int(other.adam_step_dev[0]) == 1
