"""The local (backprop-free) learner: one-step-late transitions, bandit learning, policy evaluation."""

import gymnasium as gym
import numpy as np
import pytest

import leaky.training.envs
import leaky.kernels.update_local
from leaky import ConfigError, Network, to_numpy
from leaky.learners.local import LocalConfig, LocalLearner
from leaky.training.loop import TrainConfig, train

BANDIT = dict(env="leaky/ContextualBandit-v0", learner="local", n_envs=16, eval_episodes=64,
              hidden=(16,), progress=False)


def test_advantage_critics_learn_a_state_dependent_policy_the_linear_ones_cannot():
    adv = train(TrainConfig(steps=6000, eval_every=6000, learner_options={"rule": "critic", "lr_actor": 1e-2}, **BANDIT))
    lin = train(TrainConfig(steps=6000, eval_every=6000, learner_options={"rule": "critic", "lr_actor": 1e-2, "family": "linear"},
                            **BANDIT))
    random_level = -0.29  # E[(a − a*)²] of the initial network, measured over seeds
    assert adv.final_eval > -0.05
    assert lin.final_eval < random_level + 0.08


def _bandit_run(freeze_output: bool, steps=300, seed=3, lr_actor=2e-2):
    """Train on the bandit by hand; optionally restore the output row after every update."""
    envs = gym.make_vec("leaky/ContextualBandit-v0", num_envs=16, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    net = Network.layered([2, 16, 1], backend="cpu", seed=seed, observation_space=envs.single_observation_space,
                          action_space=envs.single_action_space)
    learner = LocalLearner(net, LocalConfig(rule="critic", lr_actor=lr_actor, seed=seed))
    out = net.outputs[0]
    K0, b0 = net.K[out].copy(), float(net.b[out])
    obs, _ = envs.reset(seed=seed)
    V = net.reset(16)
    rewards = []
    for _ in range(steps):
        V, a = learner.act(V, obs)
        nobs, r, term, trunc, info = envs.step(to_numpy(a))
        learner.observe(obs, a, r, nobs, term, trunc, V, V)
        learner.update()
        if freeze_output:
            net.K[out], net.b[out] = K0, b0
        rewards.append(r.mean())
        V = net.reset(16)
        obs = nobs
    return np.mean(rewards[:30]), np.mean(rewards[-30:]), learner


def test_hidden_neurons_improve_with_the_output_frozen():
    """Only hidden neurons learn (the output row is restored after each update): reward rises."""
    first, last, _ = _bandit_run(freeze_output=True, steps=1000)
    assert last > first + 0.2, (first, last)   # measured: -0.71 -> -0.33 (seed 3)


def test_output_slope_converges_to_the_reward_gradient():
    """With the policy held fixed, the output neuron's slope u + p·x converges to ∂r/∂α."""
    _, _, learner = _bandit_run(freeze_output=False, steps=400, lr_actor=0.0)
    net = learner.net
    env = leaky.training.envs.ContextualBandit()
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    _, a, cache = net.step(net.reset(256), s)
    out = net.outputs[0]
    tau = net.decision_step[out]
    x = cache.V[tau]
    lay = leaky.kernels.update_local.critic_layout(net.n_neurons)
    theta = learner.theta[out]
    slope = theta[lay.u] + x @ theta[lay.p]
    half = (net.action_space.high - net.action_space.low)[0] / 2
    true = -2.0 * (to_numpy(a)[:, 0] - env.target(s)) * half
    assert np.corrcoef(slope, true)[0, 1] > 0.9


class ConstantReward(gym.Env):
    """Reward 1 forever: with γ = 0.9 every state's value is 10."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), 1.0, False, False, {}


@pytest.mark.parametrize("baseline", ["own", "dopamine"])
def test_td_policy_evaluation_converges(baseline):
    if "leaky/ConstantReward-v0" not in gym.registry:
        gym.register("leaky/ConstantReward-v0", entry_point=ConstantReward, max_episode_steps=10_000)
    envs = gym.make_vec("leaky/ConstantReward-v0", num_envs=8, vectorization_mode="sync")
    net = Network.layered([2, 6, 1], backend="cpu", seed=0)
    cfg = LocalConfig(rule="critic", lr_actor=0.0, gamma=0.9, lr_critic=3e-2, tau_soft=0.05, baseline=baseline, value_lr=3e-2)
    learner = LocalLearner(net, cfg)
    obs, _ = envs.reset(seed=0)
    V = net.reset(8)
    for _ in range(1500):
        V2, a = learner.act(V, obs)
        nobs, r, term, trunc, _ = envs.step(to_numpy(a))
        learner.observe(obs, a, r, nobs, term, trunc, V, V2)
        learner.update()
        V, obs = V2, nobs
    if baseline == "own":
        lay = leaky.kernels.update_local.critic_layout(net.n_neurons)
        agents = np.arange(2, net.n_neurons)
        # Q(x, μ) = w·x + c at the states seen; compare at the last transition's states
        x = V[:, :]
        values = (x @ learner.theta[agents][:, lay.w].T) + learner.theta[agents][:, lay.c]
        np.testing.assert_allclose(values.mean(), 10.0, rtol=0.1)
    else:
        value = learner.value(V).mean()
        np.testing.assert_allclose(value, 10.0, rtol=0.1)


def test_transitions_are_learned_one_step_late():
    net = Network.layered([2, 4, 1], backend="cpu")
    learner = LocalLearner(net, LocalConfig(rule="critic"))
    V = net.reset(2)
    obs = np.zeros((2, 2))
    n_updates = 0
    for t in range(5):
        V2, a = learner.act(V, obs)
        learner.observe(obs, a, np.ones(2), obs, np.zeros(2, bool), np.zeros(2, bool), V, V2)
        n_updates += bool(learner.update())
        V = V2
    assert n_updates == 4 and learner.updates == 4


def test_replay_and_literal_configurations_run():
    for opts in ({"data": "replay", "learning_starts": 64, "batch_size": 32},
                 {"family": "linear", "clock": "internal", "view": "presynaptic"},
                 {"baseline": "dopamine", "value_features": "random", "n_features": 32},
                 {"baseline": "dopamine", "value_input": "sensors", "value_optimizer": "adam"},
                 {"family": "mlp", "mlp_hidden": 4}):
        r = train(TrainConfig(env="Pendulum-v1", learner="local", steps=400, n_envs=4, eval_every=400,
                              eval_episodes=1, hidden=(8,), progress=False,
                              learner_options={"rule": "critic", **opts}))
        assert np.isfinite(r.final_eval)


def test_bad_local_options():
    with pytest.raises(ConfigError, match="LocalConfig.clock"):
        LocalConfig(rule="critic", clock="wall")
    with pytest.raises(ConfigError, match="LocalConfig.family"):
        LocalConfig(rule="critic", family="quadratic")


@pytest.mark.parametrize("opts", [{}, {"family": "mlp", "mlp_hidden": 3},
                                  {"baseline": "dopamine", "value_optimizer": "adam", "data": "replay",
                                   "learning_starts": 8, "batch_size": 8}])
def test_learner_state_round_trips_through_a_checkpoint(tmp_path, opts):
    """Saved and restored, a learner continues exactly as the original does on the same data."""
    from leaky.training.checkpoint import load_checkpoint, save_checkpoint

    def run(learner, net, steps, seed):
        rng = np.random.default_rng(seed)
        V = net.reset(3)
        for _ in range(steps):
            obs = rng.uniform(-1, 1, (3, 2))
            V2, a = learner.act(V, obs)
            learner.observe(obs, a, rng.standard_normal(3), obs, np.zeros(3, bool), np.zeros(3, bool), V, V2)
            learner.update()
            V = V2

    nets = [Network.layered([2, 5, 1], backend="cpu", seed=4) for _ in range(2)]
    a, b = (LocalLearner(n, LocalConfig(rule="critic", seed=4, **opts)) for n in nets)
    run(a, nets[0], 12, 0)
    path = str(tmp_path / "ck.npz")
    save_checkpoint(path, {"net": {"K": nets[0].K, "b": nets[0].b}, "learner": a.state_dict()})
    state = load_checkpoint(path)
    nets[1].set_parameters(K=state["net"]["K"], b=state["net"]["b"])
    b.load_state_dict(state["learner"])
    a.rng, b.rng = nets[0].backend.rng(99), nets[1].backend.rng(99)   # exploration continues alike
    a._pending = a._ready = None              # the one in-flight transition is not checkpointed
    run(a, nets[0], 6, 1)
    run(b, nets[1], 6, 1)
    np.testing.assert_array_equal(to_numpy(nets[0].K), to_numpy(nets[1].K))
    np.testing.assert_array_equal(a.theta, b.theta)


def test_mlp_with_dopamine_is_rejected():
    with pytest.raises(ConfigError, match="mlp"):
        LocalConfig(rule="critic", family="mlp", baseline="dopamine")


def test_graph_option_validates_what_it_captures():
    with pytest.raises(ConfigError, match="graph=True: baseline='dopamine'"):
        LocalConfig(rule="critic", graph=True, baseline="dopamine")
    with pytest.raises(ConfigError, match="graph=True: data='replay'"):
        LocalConfig(rule="critic", graph=True, data="replay")
    LocalConfig(rule="critic", graph=True, family="linear", clock="internal", view="presynaptic")


def test_graphed_learner_needs_the_cuda_backend():
    from leaky.learners.graph import GraphedLocalLearner

    with pytest.raises(ConfigError, match="needs backend='cuda'"):
        GraphedLocalLearner(Network.layered([2, 3, 1], backend="cpu"), LocalConfig(rule="critic", graph=True))


VERBOSE_DOT = '''digraph dot {
subgraph cluster_1 {
label="graph_1" graph[style="dashed"];
"graph_1_node_0"[style="solid" shape="record" label="{KERNEL
| {ID | 0 | 0}
| {Name | _ZN6cudapy5leaky7kernels4loop15_prepare_kernel}
}"];
"graph_1_node_1"[style="solid" shape="record" label="{MEMCPY
| {ID | 1 | 1}
| {kind | DtoD}
}"];
"graph_1_node_2"[style="solid" shape="record" label="{KERNEL
| {ID | 2 | 2}
| {Name | _ZN6cudapy5leaky7kernels4step12_step_kernel}
}"];
"graph_1_node_0" -> "graph_1_node_1";
"graph_1_node_1" -> "graph_1_node_2";
}
}
'''

PLAIN_DOT = '''digraph dot {
subgraph cluster_1 {
label="graph_1" graph[style="dashed"];
"graph_1_node_0"[style="solid" shape="octagon" label="0
_ZN6cudapy5leaky7kernels4loop15_prepare_kernel"];
"graph_1_node_1"[style="solid" shape="trapezium" label="1
MEMCPY
(DtoD,4096)"];
"graph_1_node_2"[style="solid" shape="octagon" label="2
_ZN6cudapy5leaky7kernels4step12_step_kernel"];
}
}
'''


@pytest.mark.parametrize("dot", [VERBOSE_DOT, PLAIN_DOT, PLAIN_DOT.encode()])
def test_kernel_nodes_are_counted_in_either_dot_format(dot):
    """CUDA's DOT dump names a node's type only with the verbose flag; without it kernel nodes
    are octagons. Both count the two kernels and not the copy between them."""
    from leaky.learners.graph import count_kernel_nodes

    assert count_kernel_nodes(dot) == 2
