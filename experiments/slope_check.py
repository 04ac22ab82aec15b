"""Does the output neuron's local critic know which way to push? A Pendulum-v1 diagnostic.

    python experiments/slope_check.py --steps 50000 --seed 100 [--set key=value ...]

Trains only the critics (``lr_actor = 0``: the policy stays the initial network) with the local
learner, then compares, on 64 random Pendulum states, the output neuron's critic slope
``∂Q_out/∂α`` with the true ``∂Q^π/∂α`` of the same fixed policy, measured by finite
differences of Monte Carlo returns: the environment is set to the state, the first action is
``a ± ε``, then the greedy network acts for ``horizon`` steps (Pendulum is deterministic, so one
rollout per side suffices). Prints their Pearson correlation and sign agreement.
"""

import argparse
import json

import gymnasium as gym
import numpy as np

from leaky import to_numpy
from leaky.kernels.update_local import critic_layout
from leaky.learners.local import LocalConfig, LocalLearner
from leaky.training.loop import TrainConfig, build_network, make_envs


def rollout_return(env, net, state, first_action, horizon, gamma):
    env.reset(seed=0)
    env.unwrapped.state = np.array(state, dtype=np.float64)
    obs, r, *_ = env.step(np.array([first_action], np.float32))
    total, disc = r, gamma
    V = net.reset(1)
    for _ in range(horizon - 1):
        V, a, _ = net.step(V, obs[None, :])
        obs, r, *_ = env.step(to_numpy(a)[0])
        total += disc * r
        disc *= gamma
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--horizon", type=int, default=200)
    p.add_argument("--states", type=int, default=64)
    p.add_argument("--set", nargs="*", default=[], help="LocalConfig options, JSON values")
    args = p.parse_args(argv)
    opts = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    opts["lr_actor"] = 0.0
    cfg = TrainConfig(env="Pendulum-v1", learner="local", steps=args.steps, n_envs=8, seed=args.seed,
                      hidden=(64, 64), progress=False)
    envs = make_envs(cfg.env, cfg.n_envs)
    net = build_network(cfg, envs.single_observation_space, envs.single_action_space)
    learner = LocalLearner(net, LocalConfig(rule="critic", seed=args.seed, **opts))
    obs, _ = envs.reset(seed=args.seed)
    V = net.reset(cfg.n_envs)
    for _ in range(args.steps // cfg.n_envs):
        V2, a = learner.act(V, obs)
        nobs, r, term, trunc, info = envs.step(to_numpy(a))
        fobs = nobs.copy()
        for i in np.flatnonzero(term | trunc):
            fobs[i] = info["final_obs"][i]
        learner.observe(obs, a, r, fobs, term, trunc, V, V2)
        learner.update()
        V = V2.copy()
        V[term | trunc] = 0.0
        obs = nobs

    rng = np.random.default_rng(0)
    env = gym.make("Pendulum-v1").unwrapped
    out = net.outputs[0]
    tau = int(net.decision_step[out])
    lay = critic_layout(net.n_neurons)
    theta = to_numpy(learner.theta[out]).astype(np.float64)
    gamma, eps, half = learner.cfg.gamma, 0.2, 2.0
    local, true = [], []
    for _ in range(args.states):
        state = [rng.uniform(-np.pi, np.pi), rng.uniform(-8, 8)]
        o = np.array([np.cos(state[0]), np.sin(state[0]), state[1]], np.float32)
        _, a, cache = net.step(net.reset(1), o[None, :])
        x = to_numpy(cache.V[tau])[0].astype(np.float64)
        local.append(theta[lay.u] + x @ theta[lay.p])
        a0 = float(to_numpy(a)[0, 0])
        q_plus = rollout_return(env, net, state, np.clip(a0 + eps, -2, 2), args.horizon, gamma)
        q_minus = rollout_return(env, net, state, np.clip(a0 - eps, -2, 2), args.horizon, gamma)
        true.append((q_plus - q_minus) / (2 * eps) * half)   # ∂Q/∂α = ∂Q/∂a · da/dα
    local, true = np.array(local), np.array(true)
    corr = float(np.corrcoef(local, true)[0, 1])
    agree = float(np.mean(np.sign(local) == np.sign(true)))
    print(json.dumps({"options": opts, "steps": args.steps, "seed": args.seed, "corr": round(corr, 3),
                      "sign_agreement": round(agree, 3), "true_abs_mean": float(np.abs(true).mean()),
                      "local_abs_mean": float(np.abs(local).mean())}))


if __name__ == "__main__":
    main()
