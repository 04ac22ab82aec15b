"""Step a leaky network through one Pendulum-v1 episode and print its return.

    python examples/rollout.py --backend cpu --neurons 64 --delay 2 --leak 0.5 --seed 0

The network is untrained (random weights), so the return is that of a random-ish policy
(Pendulum-v1: about -1000 to -1600); the point is the API: encoder and decoder from the
Gymnasium spaces, voltages carried across environment steps, ℓ internal steps per action.
"""

import argparse

import gymnasium as gym
import numpy as np

import leaky


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--backend", default="auto", choices=["auto", "numpy", "cpu", "cuda"])
    p.add_argument("--neurons", type=int, default=64, help="N, sensors and outputs included")
    p.add_argument("--delay", type=int, default=2, help="ℓ, internal steps per env step")
    p.add_argument("--leak", type=float, default=0.5, help="λ in (0, 1]")
    p.add_argument("--noise", type=float, default=0.0, help="exploration noise std per neuron")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    env = gym.make(args.env)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    cfg = leaky.NetworkConfig(n_neurons=args.neurons, n_inputs=obs_dim, n_outputs=act_dim,
                              delay=args.delay, leak=args.leak, seed=args.seed)
    net = leaky.Network(cfg, backend=args.backend, observation_space=env.observation_space,
                        action_space=env.action_space)
    rng = net.backend.rng(args.seed)

    obs, _ = env.reset(seed=args.seed)
    V = net.reset(batch=1)
    episode_return, steps, done = 0.0, 0, False
    while not done:
        noise = net.sample_noise(rng, 1, args.noise) if args.noise > 0 else None
        V, action, _ = net.step(V, obs[None, :], noise)
        obs, reward, terminated, truncated, _ = env.step(leaky.to_numpy(action)[0])
        episode_return += float(reward)
        steps += 1
        done = terminated or truncated
    print(f"{args.env}: return {episode_return:.1f} over {steps} steps "
          f"(N={args.neurons}, ℓ={args.delay}, λ={args.leak}, backend={net.backend.name})")
    return episode_return


if __name__ == "__main__":
    main()
