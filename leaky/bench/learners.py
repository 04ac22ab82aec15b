"""``leaky bench update``, learners: a whole local update against a whole DDPG update at equal
parameter counts, and against stable-baselines3's DDPG step when it is installed."""

from __future__ import annotations

import math

import numpy as np

from leaky.bench.timing import Row, _row, copy_rate, sgemm_rate, time_host
from leaky.bench.update import update_counts


TRAIN_GRID = [(64, 256, 2), (256, 256, 2)]                   # (N, B, ℓ); the target: N = 256
QUICK_TRAIN_GRID = [(32, 32, 2)]
TRAIN_TARGET = 3.0   # local samples/s over DDPG's at dense N = 256, B = 256, ℓ = 2
SB3_TARGET = 5.0     # local samples/s over stable-baselines3 DDPG's, same size


# ---------------------------------------------------------------------------------------------
# update (learners): a whole local update against a whole DDPG update, equal parameter counts
# ---------------------------------------------------------------------------------------------

def ddpg_hidden_for(params: int, d_in: int) -> int:
    """Width H of a DDPG critic ``d_in → H → H → 1`` with about ``params`` parameters."""
    # (d_in + 1)·H + (H + 1)·H + H + 1 = H² + (d_in + 3)·H + 1
    return max(1, round((-(d_in + 3) + math.sqrt((d_in + 3) ** 2 + 4 * (params - 1))) / 2))


def _train_learners(N, B, ell, backend, K=None):
    """A local and a DDPG learner on identical dense networks, with one batch of data each."""
    from leaky.model.config import NetworkConfig
    from leaky.learners.ddpg import DDPGConfig, DDPGLearner
    from leaky.learners.local import LocalConfig, LocalLearner
    from leaky.model.network import Network
    from leaky.learners.base import Transition

    cfg = NetworkConfig(n_neurons=N, n_inputs=3, n_outputs=1, delay=ell, leak=0.5, seed=0)
    nets = [Network(cfg, backend=backend) for _ in range(2)]
    if K is not None:
        for net in nets:
            net.set_parameters(K=K)
    local = LocalLearner(nets[0], LocalConfig(rule="critic", batch_size=B, seed=0))
    nnz = int(np.sum(nets[0].col_hi - nets[0].col_lo))
    n_local = nnz + N + (N - cfg.n_inputs) * (2 * N + 3)
    H = ddpg_hidden_for(n_local - nnz - N, cfg.n_inputs + cfg.n_outputs)
    ddpg = DDPGLearner(nets[1], DDPGConfig(batch_size=B, learning_starts=0, buffer_size=4 * B,
                                           hidden=(H, H), seed=0))
    n_ddpg = nnz + N + sum(int(p.size) for p in ddpg.critic.params)

    rng = np.random.default_rng(0)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731 - same values on both backends
    obs, obs2 = f32(rng.standard_normal((B, 3))), f32(rng.standard_normal((B, 3)))
    xi1, xi2 = f32(0.1 * rng.standard_normal((ell, B, N))), f32(0.1 * rng.standard_normal((ell, B, N)))
    reward = f32(rng.standard_normal(B))
    net = nets[0]
    V1, _, c1 = net.step(net.reset(B), obs, xi1)
    V2, _, c2 = net.step(V1, obs2, xi2)
    transition = Transition(c1, net.backend.asarray(xi1), net.backend.asarray(reward),
                            net.backend.zeros(B), c2)
    action = f32(rng.uniform(-1, 1, (B, 1)))
    no = np.zeros(B, bool)
    for _ in range(2):
        ddpg.observe(obs, action, reward, obs2, no, no, V1, V2)
    return local, ddpg, transition, n_local, n_ddpg, H, nnz


def _check_learners(local, ref_local, ddpg, ref_ddpg, tr, N, B):
    """One update of each learner on the ``cpu`` backend and on the float64 ``numpy`` one.

    Metrics (TD errors, slopes, losses, Q values) must agree to float32 accuracy. Weights only to
    one optimiser step: both learners start Adam from zero moments, where the first step is
    ``lr·sign(g)`` and a gradient within rounding of 0 may take either sign.
    """
    from dataclasses import replace

    from leaky.model.network import StepCache

    f64 = lambda c: StepCache(*(np.asarray(a, np.float64) for a in (c.V, c.z, c.y, c.alpha)))  # noqa: E731
    ref_tr = replace(tr, cache=f64(tr.cache), next_cache=f64(tr.next_cache),
                     noise=np.asarray(tr.noise, np.float64), reward=np.asarray(tr.reward, np.float64),
                     terminated=np.asarray(tr.terminated, np.float64))
    for name, (got, want) in {"local": (local.learn(tr), ref_local.learn(ref_tr)),
                              "ddpg": (ddpg.update(), ref_ddpg.update())}.items():
        for key, w in want.items():
            if not abs(got[key] - w) <= 1e-3 * max(1.0, abs(w)):
                raise AssertionError(f"bench train {name}: {key} {got[key]:.6g} differs from the "
                                     f"float64 learner's {w:.6g}")
    lr = max(local.cfg.lr_actor * local.cfg.lr_critic * 10, 2 * ddpg.cfg.actor_lr) * 1.01
    for name, a, b in (("local", local.net.K, ref_local.net.K), ("ddpg", ddpg.net.K, ref_ddpg.net.K)):
        err = float(np.abs(np.asarray(a, np.float64) - b).max())
        if not err <= lr:
            raise AssertionError(f"bench train {name}: K differs from the float64 learner's by {err:.2e}"
                                 f" > one step {lr:.1e}")


def ddpg_update_macs(N, B, ell, nnz, d_in, hidden):
    """Multiply-adds of one DDPG update: actor 2 forward + 1 backward, critic 5 passes."""
    sizes = (d_in,) + tuple(hidden) + (1,)
    critic = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 4 * ell * B * nnz + 5 * B * critic


def bench_learners(grid=None, repeats: int = 7) -> list[Row]:
    """Whole learner updates, local vs DDPG (and SB3's DDPG when installed), over ``grid`` of
    (N, B, ℓ), in samples/s."""
    from leaky.core.backend import to_numpy

    rows = []
    for N, B, ell in TRAIN_GRID if grid is None else grid:
        local, ddpg, tr, n_local, n_ddpg, H, nnz = _train_learners(N, B, ell, "cpu")
        ref_local, ref_ddpg, *_ = _train_learners(N, B, ell, "numpy", K=to_numpy(local.net.K))
        _check_learners(local, ref_local, ddpg, ref_ddpg, tr, N, B)

        S = B
        u_flops, u_bytes = update_counts(N, S, ell, B, nnz, 3)
        d_macs = ddpg_update_macs(N, B, ell, nnz, 4, (H, H))
        d_flops = 2.0 * d_macs
        d_bytes = 4.0 * (3 * n_ddpg * 2 + 2 * B * (2 * 3 + 1 + 2 + 2 * N))   # params + Adam, the batch
        rate, bw = sgemm_rate(B, N), copy_rate()
        t_local = time_host(lambda: local.learn(tr), repeats)
        t_ddpg = time_host(ddpg.update, repeats)
        ratio = t_ddpg / t_local
        target = ""
        if (N, B, ell) == (256, 256, 2):
            target = f"; target ≥ {TRAIN_TARGET:g}×: {'met' if ratio >= TRAIN_TARGET else 'not met'}"
        rows.append(_row("update", "local learner", "cpu", B, N, ell, t_local, u_flops, u_bytes,
                         max(u_flops / rate, u_bytes / bw), None,
                         f"{n_local} params, advantage critics{target}", samples_per_s=B / t_local,
                         vs_baseline=ratio))
        rows.append(_row("update", "ddpg learner", "cpu", B, N, ell, t_ddpg, d_flops, d_bytes,
                         max(d_flops / rate, d_bytes / bw), None,
                         f"{n_ddpg} params, critic {H}-{H}", samples_per_s=B / t_ddpg, vs_baseline=1.0))
        sb3 = _sb3_ddpg(n_local, B)
        if sb3 is not None:
            step, n_sb3, H3 = sb3
            t_sb3 = time_host(step, repeats)
            s_flops = 2.0 * sb3_update_macs(B, 3, 1, H3)
            s_bytes = 4.0 * (3 * n_sb3 * 2 + B * (2 * 3 + 1 + 2))
            target = f"; local {t_sb3 / t_local:.2f}× this"
            if (N, B, ell) == (256, 256, 2):
                target += f" (target ≥ {SB3_TARGET:g}×: {'met' if t_sb3 / t_local >= SB3_TARGET else 'not met'})"
            rows.append(_row("update", "sb3 ddpg", "torch", B, N, ell, t_sb3, s_flops, s_bytes,
                             max(s_flops / rate, s_bytes / bw), None,
                             f"{n_sb3} params, actor and critic {H3}-{H3}, "
                             f"{_torch_threads()} torch thread(s){target}",
                             samples_per_s=B / t_sb3, vs_baseline=t_ddpg / t_sb3))
    return rows


def sb3_params(H: int, d_obs: int, d_act: int) -> int:
    """Trainable parameters of SB3's DDPG with ``net_arch=[H, H]`` (actor and critic)."""
    mlp = lambda d_in, d_out: (d_in + 1) * H + (H + 1) * H + (H + 1) * d_out  # noqa: E731
    return mlp(d_obs, d_act) + mlp(d_obs + d_act, 1)


def sb3_update_macs(B, d_obs, d_act, H):
    """Multiply-adds of one SB3 DDPG gradient step: the critic's target (target actor and target
    critic forward), critic forward and backward (×3), actor forward, critic forward and both
    backward through the critic into the actor (×3 each)."""
    actor = d_obs * H + H * H + H * d_act
    critic = (d_obs + d_act) * H + H * H + H
    return B * (actor + critic + 3 * critic + 3 * actor + 3 * critic)


def _torch_threads():
    import torch

    return torch.get_num_threads()


def _sb3_ddpg(params: int, B: int):
    """``(one gradient step, parameter count, H)`` of stable-baselines3's DDPG on Pendulum-v1
    with hidden width H chosen for ``params`` trainable parameters; None without SB3.

    Torch runs on as many threads as Numba (``numba.get_num_threads()``), so both sides of the
    ratio use the same cores. The replay buffer holds 4·B random transitions.
    """
    try:
        import gymnasium as gym
        import numba
        import torch
        from stable_baselines3 import DDPG
        from stable_baselines3.common.logger import configure
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    H = min(range(1, 4096), key=lambda h: abs(sb3_params(h, 3, 1) - params))
    env = gym.make("Pendulum-v1")
    model = DDPG("MlpPolicy", env, policy_kwargs={"net_arch": [H, H]}, buffer_size=4 * B, batch_size=B,
                 learning_starts=0, device="cpu", seed=0)
    model.set_logger(configure(folder=None, format_strings=[]))
    rng = np.random.default_rng(0)
    for _ in range(4 * B):
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        model.replay_buffer.add(obs, obs + 0.01, rng.uniform(-2, 2, (1, 1)).astype(np.float32),
                                rng.standard_normal(1).astype(np.float32), np.zeros(1), [{}])
    n = sum(p.numel() for p in model.actor.parameters()) + sum(p.numel() for p in model.critic.parameters())
    env.close()
    return (lambda: model.train(gradient_steps=1, batch_size=B)), int(n), H
