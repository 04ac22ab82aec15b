"""The MLP-critic update's cuda face in Numba's CUDA simulator, against the float64 reference.

One block of MAX_HIDDEN × TILE_S = 256 simulated threads per neuron: shapes are tiny but awkward
(B = 1, one hidden unit, H odd, H = MAX_HIDDEN, transitions not a multiple of the 4-transition
tile, more parameters per critic than threads in the block, empty presynaptic rows, sensors,
actor off). The inputs and the tolerance are the cpu face's (tests/kernels/test_update_mlp.py).
"""

import numpy as np
import pytest

from leaky.kernels import update_mlp as um
from tests.kernels.update_local_cases import call_update
from tests.kernels.update_mlp_cases import assert_faces_agree, random_mlp_case, run_face, tolerance

pytestmark = pytest.mark.cudasim

CASES = [
    # B, N, H, ell, n_in, clock, view, optimizer, activation, actor
    (1, 3, 1, 1, 1, "causal", "all", "adam", 0, True),            # one transition, one unit
    (2, 5, 3, 3, 2, "internal", "presynaptic", "sgd", 1, True),   # 6 transitions: 2 tiles
    (3, 6, 5, 2, 0, "causal", "presynaptic", "adam", 2, False),   # actor off, empty row 5
    (5, 4, 17, 1, 3, "causal", "all", "sgd", 0, True),            # P = 426 > 256 threads
    (3, 3, um.MAX_HIDDEN, 3, 2, "internal", "all", "adam", 0, True),  # H = MAX_HIDDEN, S = 9
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_cuda_face_matches_reference(case):
    B, N, H, ell, n_in, clock, view, optimizer, activation, actor = case
    rng = np.random.default_rng(B * 1000 + N)
    args, params, cfg, flags = random_mlp_case(rng, B, N, H, ell, n_in, clock, view, optimizer,
                                               activation, actor)
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    got = run_face(um.update_mlp_cuda, args, params, cfg, flags)
    assert_faces_agree(got, want, tolerance(args, H))
    for key in ("theta", "bias", "K"):                 # sensors untouched
        np.testing.assert_array_equal(got[key][:n_in], params[key][:n_in])
    assert not np.array_equal(got["theta"][n_in:], params["theta"][n_in:])
    if not actor:
        np.testing.assert_array_equal(got["K"], params["K"])
        np.testing.assert_array_equal(got["bias"], params["bias"])


@pytest.mark.parametrize("seed", range(6))
def test_cuda_face_matches_reference_on_random_cases(seed):
    """Random small cases (the cpu face's hypothesis ranges, narrower: the simulator is slow).
    Measured on 40 such cases: the worst output was 0.04 tolerance units (of 2)."""
    pick = np.random.default_rng(seed)
    B, N, H, ell = (int(pick.integers(1, 6)), int(pick.integers(2, 8)), int(pick.integers(1, 10)),
                    int(pick.integers(1, 4)))
    args, params, cfg, flags = random_mlp_case(
        np.random.default_rng(100 + seed), B, N, H, ell, int(pick.integers(0, min(3, N))),
        um.CLOCKS[seed % 2], sorted(um.VIEWS)[(seed // 2) % 2], sorted(um.OPTIMIZERS)[seed % 3 % 2],
        int(pick.integers(0, 3)), bool(pick.integers(0, 2)))
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    got = run_face(um.update_mlp_cuda, args, params, cfg, flags)
    assert_faces_agree(got, want, tolerance(args, H))


def test_cuda_face_ignores_what_the_scratch_held():
    """``work`` passed in full of NaN (a reused buffer): the result does not depend on it."""
    rng = np.random.default_rng(5)
    args, params, cfg, flags = random_mlp_case(rng, 2, 4, 3, 2, 2, "internal", "presynaptic")
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    a = {k: (v if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in args.items()}
    p = {k: v.astype(np.float32) for k, v in params.items()}
    work = np.full(p["theta"].shape, np.nan, dtype=np.float32)
    call_update(um.update_mlp_cuda, a, p, cfg, flags["n_inputs"], flags["activation"], flags["step"], work=work)
    assert_faces_agree({k: v.astype(np.float64) for k, v in p.items()}, want, tolerance(args, 3))
