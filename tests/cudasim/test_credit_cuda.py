"""The credit update's cuda face in Numba's CUDA simulator, against the float64 reference.

One block of 128 simulated threads per neuron: shapes are tiny but awkward (B = 1, a batch of
more than one 128-row tile, a row of more than one 128-column pass, every rule, apply on and
off, two consecutive updates). The inputs and the tolerance are the cpu face's
(tests/kernels/credit_cases.py).
"""

import numpy as np
import pytest

from leaky.kernels import credit as ck
from tests.kernels.credit_cases import assert_faces_agree, random_credit_case, run_updates

pytestmark = pytest.mark.cudasim

CASES = [
    # B, N, n_in, n_out, ℓ, k, topology, activation, rule, apply, consecutive updates
    (1, 5, 1, 1, 2, 1, "dense", 0, 0, True, 2),
    (3, 8, 2, 2, 3, 3, "dense", 1, 1, True, 2),
    (2, 7, 1, 1, 2, 0, "sparse", 2, 2, False, 1),
    (130, 4, 1, 1, 2, 2, "dense", 0, 1, True, 2),      # 130 rows: two tiles of the batch
    (3, 131, 127, 1, 2, 1, "dense", 0, 0, True, 1),    # 131 columns: two column passes
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_cuda_face_matches_reference(case):
    B, N, n_in, n_out, ell, k, topology, act, rule, apply, steps = case
    rng = np.random.default_rng(B * 1000 + N)
    args = random_credit_case(rng, B, N, n_in, n_out, ell, k, topology, act, rule, apply,
                              tau="random", seed=2, moments_off_mask=True)
    got = run_updates(ck.credit_update_cuda, *args, steps=steps)
    want = run_updates("numpy", *args, steps=steps)
    for g, w in zip(got, want):
        assert_faces_agree(g, w, B, N, k)


def test_shared_critic_learner_on_the_cuda_faces():
    """One whole update of the shared-critic learner (target action: the tangent step with
    k = 0; actor step: tangent step with k = 1 and the credit update) on the cuda backend in the
    simulator equals the same learner on the cpu backend: both draw the same float32 numbers
    (NumPy's generators) and start from the same network, critic and replay."""
    from leaky.model.config import NetworkConfig
    from leaky.learners.local import LocalConfig
    from leaky.model.network import Network
    from leaky.learners.shared_critic import SharedCriticLearner

    B, N = 3, 7
    cfg = NetworkConfig(n_neurons=N, n_inputs=2, n_outputs=1, delay=2, leak=0.5, seed=0)
    lcfg = LocalConfig(rule="feedback", batch_size=B, learning_starts=0, replay_size=4 * B, seed=0)
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((B, 2)), rng.uniform(-1, 1, (B, 1)), rng.standard_normal(B),
             0.3 * rng.standard_normal((B, N))) for _ in range(2)]
    learners = {}
    for backend in ("cpu", "cuda"):
        learner = SharedCriticLearner(Network(cfg, backend=backend), lcfg)
        for obs, action, reward, V in data:
            learner.observe(obs, action, reward, obs + 0.01, np.zeros(B, bool), np.zeros(B, bool), V, V)
        learner.update()
        learners[backend] = learner
    cpu, gpu = learners["cpu"], learners["cuda"]
    assert np.abs(cpu.G).max() > 0
    np.testing.assert_allclose(gpu.G, cpu.G, rtol=0, atol=1e-5 * max(1.0, np.abs(cpu.G).max()))
    np.testing.assert_allclose(gpu.F, cpu.F, rtol=0, atol=1e-6)
    step = 2.0 * lcfg.lr_actor * 1.01      # Adam from zero moments: a near-zero G may flip sign
    assert np.abs(gpu.net.K - cpu.net.K).max() <= step
    assert np.abs(cpu.net.K - Network(cfg, backend="cpu").K).max() > 0   # it did learn
