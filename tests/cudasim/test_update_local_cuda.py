"""The local-update kernel's cuda face in Numba's CUDA simulator, against the float64 reference.

One block of 128 simulated threads per neuron: shapes are tiny but awkward (B = 1, odd N, N
above and not a multiple of the 32-feature tile, more transitions than one 128-thread tile,
empty presynaptic rows, sensors). The inputs and the tolerance are the cpu face's
(tests/kernels/update_local_cases.py).
"""

import numpy as np
import pytest

from leaky.kernels import update_local as ul
from leaky.kernels.update_local import critic_layout
from tests.kernels.update_local_cases import assert_faces_agree, random_update_case, run_face

pytestmark = pytest.mark.cudasim

CASES = [
    # B, N, ell, n_in, clock, view, family, baseline, optimizer, activation
    (1, 3, 1, 1, "causal", "all", "advantage", "own", "adam", 0),
    (2, 5, 3, 2, "internal", "presynaptic", "linear", "own", "sgd", 1),
    (3, 6, 2, 0, "causal", "presynaptic", "advantage", "dopamine", "sgd", 2),
    (2, 4, 2, 1, "internal", "all", "linear", "dopamine", "adam", 0),
    (45, 3, 3, 1, "internal", "all", "advantage", "own", "adam", 0),   # 135 transitions: 2 tiles
    (2, 37, 1, 33, "causal", "all", "advantage", "own", "adam", 0),    # 37 features: 2 tiles
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_cuda_face_matches_reference(case):
    B, N, ell, n_in, clock, view, family, baseline, optimizer, activation = case
    rng = np.random.default_rng(B * 1000 + N)
    args, params, cfg, flags = random_update_case(rng, B, N, ell, n_in, clock, view, family,
                                                  baseline, optimizer, activation)
    want = run_face(ul.update_local_reference, args, params, cfg, flags)
    got = run_face(ul.update_local_cuda, args, params, cfg, flags)
    assert_faces_agree(got, want, args)
    for key in ("theta", "bias"):                      # sensors untouched, agents updated
        np.testing.assert_array_equal(got[key][:n_in], params[key][:n_in])
        assert not np.array_equal(got[key][n_in:], params[key][n_in:])


def test_cuda_face_keeps_curvature_non_positive():
    rng = np.random.default_rng(7)
    args, params, cfg, flags = random_update_case(rng, 2, 4, 1, 1, lr_critic=1.0)
    args["r"] = np.full_like(args["r"], 50.0)
    lay = critic_layout(4)
    params["theta"][:, lay.h] = -1e-3
    got = run_face(ul.update_local_cuda, args, params, cfg, flags)
    assert (got["theta"][1:, lay.h] == 0).all()
