"""The tangent step's cuda face in Numba's CUDA simulator, against the float64 reference.

One block of 32 × 8 simulated threads per few batch rows: shapes are tiny but awkward (B = 1,
N not a multiple of the 32-neuron tile, batches not a multiple of a block's rows, more stacked
rows than one 8-row chunk, k = 0 and k = 17, pruned and random decision steps). The inputs and
the tolerance are the cpu face's (tests/kernels/tangent_cases.py).
"""

import numpy as np
import pytest

from leaky.kernels import tangent as tk
from tests.kernels.tangent_cases import assert_faces_agree, random_tangent_case, run_face

pytestmark = pytest.mark.cudasim

CASES = [
    # B, N, n_in, n_out, ℓ, k, topology, activation, inhibition, pulse, last, tau
    (1, 5, 1, 1, 2, 0, "dense", 0, 0, False, "decision", "decision"),
    (3, 37, 2, 1, 3, 3, "dense", 1, 1, True, "full", "decision"),        # 2 tiles; rb = 2
    (9, 20, 1, 2, 2, 1, "sparse", 2, 0, False, "random", "random"),      # rb = 4: 3 blocks
    (2, 12, 2, 1, 2, 17, "layered", 0, 0, False, "decision", "decision"),  # 18 stacked rows
    (2, 9, 1, 1, 4, 2, "dense", 0, 0, True, "random", "random"),
    (1, 6, 1, 1, 2, 64, "dense", 0, 1, False, "full", "decision"),      # 65 stacked rows
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_cuda_face_matches_reference(case):
    B, N, n_in, n_out, ell, k, topology, act, inhibition, pulse, last, tau = case
    rng = np.random.default_rng(B * 1000 + N)
    args = random_tangent_case(rng, B, N, n_in, n_out, ell, k, topology, act, inhibition, pulse,
                               last, tau, seed=1)
    assert_faces_agree(run_face(tk.tangent_step_cuda, *args), run_face("numpy", *args), N)


def test_cuda_face_needs_its_tile_ranges_and_scratch():
    rng = np.random.default_rng(0)
    args = random_tangent_case(rng, 1, 5, 1, 1, 2, 1)
    with pytest.raises(ValueError, match="tile_lo"):
        run_face(tk.tangent_step_cuda, *args[:3], args[3]._replace(tile_lo=None), args[4])
