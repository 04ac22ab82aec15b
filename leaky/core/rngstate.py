"""Random generators' states as arrays, for checkpoints (which hold arrays and JSON only).

NumPy's ``PCG64`` state is two 128-bit integers and a cached 32-bit draw: six uint64 words
restore it exactly. CuPy's generators expose no state; a learner on the GPU reseeds them on
resume from a ``SeedSequence`` spawned with the resume point instead (a new, independent
stream, not the continuation: docs/learners.md, "What a resume repeats").
"""

from __future__ import annotations

import numpy as np

from leaky.core.errors import InputError

_MASK64 = (1 << 64) - 1


def pcg64_words(rng: np.random.Generator) -> np.ndarray:
    """A NumPy PCG64 generator's state as six uint64 words."""
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise InputError(f"state_dict: cannot save a {st['bit_generator']} generator; expected PCG64")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, st["has_uint32"],
                     st["uinteger"]], dtype=np.uint64)


def set_pcg64_words(rng: np.random.Generator, words) -> None:
    """Put the state :func:`pcg64_words` returned back into ``rng``."""
    w = [int(x) for x in np.asarray(words).reshape(-1)]
    if len(w) != 6:
        raise InputError(f"load_state_dict: a generator state has {len(w)} words, expected 6 (PCG64)")
    rng.bit_generator.state = {"bit_generator": "PCG64",
                               "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
                               "has_uint32": w[4], "uinteger": w[5]}


def int_seed(seq: np.random.SeedSequence) -> int:
    """A 63-bit integer seed from a SeedSequence (CuPy's default_rng takes ints only)."""
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
