"""A short training run and how far it moved the weights: shared by the cpu training test
(tests/training/test_train.py) and the GPU one (tests/test_gpu.py)."""

import numpy as np

TRAINS_OPTIONS = {"feedback": {"learning_starts": 64, "batch_size": 32}, "critic": {"rule": "critic"}}


def short_run(backend: str, options: dict, tmp_path, steps: int = 400):
    """``(result, moved)``: a 400-step local-learner run on Pendulum-v1 (4 envs, one hidden layer
    of 16) and, per parameter of the network, ``‖after − before‖ / ‖before‖`` over the mask
    (K) or every neuron (b): how far learning moved the weights from their initial values."""
    from leaky.training.checkpoint import load_checkpoint
    from leaky.training.loop import TrainConfig, build_network, make_envs, train

    cfg = TrainConfig(env="Pendulum-v1", learner="local", backend=backend, steps=steps, n_envs=4,
                      eval_every=steps, eval_episodes=1, hidden=(16,), progress=False,
                      learner_options=options, checkpoint=str(tmp_path / f"{backend}.npz"))
    result = train(cfg)
    envs = make_envs(cfg.env, 1)
    start = build_network(cfg, envs.single_observation_space, envs.single_action_space)
    envs.close()
    from leaky.core.backend import to_numpy

    mask = to_numpy(start.mask) != 0
    K0, b0 = to_numpy(start.K).astype(np.float64), to_numpy(start.b).astype(np.float64)
    state = load_checkpoint(cfg.checkpoint)["network"]
    K1, b1 = np.asarray(state["K"], np.float64), np.asarray(state["b"], np.float64)
    moved = {"K": float(np.linalg.norm((K1 - K0)[mask]) / np.linalg.norm(K0[mask])),
             "b": float(np.linalg.norm(b1 - b0) / max(1.0, np.linalg.norm(b0)))}
    return result, moved


def assert_learned(result, moved) -> None:
    """The run made updates, reported finite metrics, and its updates moved the weights (an
    update face that computes nothing, or NaN, fails here)."""
    assert result.updates > 0 and np.isfinite(result.final_eval)
    assert result.metrics and all(np.isfinite(v) for m in result.metrics for v in m.values())
    assert np.isfinite(moved["K"]) and np.isfinite(moved["b"])
    assert moved["K"] > 1e-5, f"the weights K did not move: {moved}"   # critic rule: ~3e-4
