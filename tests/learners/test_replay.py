"""The one replay memory (leaky.learners.replay.RingBuffer) under both learners' buffers."""

import numpy as np
import pytest

from leaky.core.errors import ConfigError, InputError
from leaky.learners.replay import ReplayBuffer, RingBuffer


def _filled(capacity, n, shapes=None):
    ring = RingBuffer(capacity, ("x", "r"), "cpu", shapes=shapes)
    for start in range(0, n, 3):                   # rows 0, 1, …, n-1, three at a time
        k = np.arange(start, min(n, start + 3), dtype=np.float64)
        ring.put({"x": np.stack([k, -k], 1), "r": k})
    return ring


def test_a_wrapped_buffer_restores_every_row_in_its_place():
    ring = _filled(5, 12)                          # 12 rows into 5: rows 7 … 11 remain, pos 2
    assert (len(ring), ring.pos) == (5, 2)
    state = ring.state_dict()
    other = RingBuffer(5, ("x", "r"), "cpu")
    other.load_state_dict(state)
    idx = np.arange(5)
    np.testing.assert_array_equal(other.rows(idx)["x"], ring.rows(idx)["x"])
    assert (other.pos, other.size) == (ring.pos, ring.size)
    k = np.array([12.0])                           # and the next row overwrites the same slot
    for b in (ring, other):
        b.put({"x": np.stack([k, -k], 1), "r": k})
    np.testing.assert_array_equal(other.rows(idx)["r"], ring.rows(idx)["r"])
    assert sorted(ring.rows(idx)["r"]) == [8.0, 9.0, 10.0, 11.0, 12.0]


@pytest.mark.parametrize("capacity, kept", [(3, [9.0, 10.0, 11.0]), (8, [7.0, 8.0, 9.0, 10.0, 11.0])])
def test_into_another_capacity_the_newest_rows_are_kept_oldest_first(capacity, kept):
    other = RingBuffer(capacity, ("x", "r"), "cpu")
    other.load_state_dict(_filled(5, 12).state_dict())
    assert other.rows(np.arange(len(other)))["r"].tolist() == kept


def test_an_oldest_first_checkpoint_without_pos_still_loads():
    """DDPG's checkpoints before the buffers were one: the rows oldest first, no pos."""
    other = RingBuffer(4, ("x", "r"), "cpu")
    other.load_state_dict({"x": np.zeros((6, 2)), "r": np.arange(6.0), "capacity": np.asarray(6)})
    assert other.rows(np.arange(4))["r"].tolist() == [2.0, 3.0, 4.0, 5.0] and other.pos == 0


def test_the_ddpg_replay_resumes_to_the_same_samples():
    def filled():
        buf = ReplayBuffer(5, n_obs=2, n_act=1, n_neurons=3, backend="cpu")
        for k in range(4):
            r = np.arange(3 * k, 3 * k + 3, dtype=np.float64)
            buf.add(np.stack([r, r], 1), r[:, None], r, np.stack([r, r], 1), np.zeros(3),
                    np.tile(r[:, None], 3), np.tile(r[:, None], 3))
        return buf

    buf, other = filled(), ReplayBuffer(5, n_obs=2, n_act=1, n_neurons=3, backend="cpu")
    other.load_state_dict(buf.state_dict())
    a = buf.sample(16, np.random.default_rng(3))
    b = other.sample(16, np.random.default_rng(3))
    np.testing.assert_array_equal(a.reward, b.reward)
    np.testing.assert_array_equal(a.V, b.V)


def test_bad_capacity_and_batches_are_refused():
    with pytest.raises(ConfigError, match="RingBuffer.capacity: got 0"):
        RingBuffer(0, ("x",), "cpu")
    ring = RingBuffer(2, ("x",), "cpu")
    with pytest.raises(InputError, match="got 3 rows, expected 1 … capacity = 2"):
        ring.put({"x": np.zeros((3, 1))})
    with pytest.raises(InputError, match="the buffer is empty"):
        ring.rows(np.arange(1))
