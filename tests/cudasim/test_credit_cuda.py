"""The credit update's cuda face in Numba's CUDA simulator, against the float64 reference.

One block of 128 simulated threads per neuron: shapes are tiny but awkward (B = 1, a batch of
more than one 128-row tile, a row of more than one 128-column pass, every rule, apply on and
off, two consecutive updates). The inputs and the tolerance are the cpu face's
(tests/kernels/test_credit.py).
"""

import numpy as np
import pytest

from leaky.kernels import credit as ck
from tests.kernels.test_credit import assert_faces_agree, random_credit_case, run_updates

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
