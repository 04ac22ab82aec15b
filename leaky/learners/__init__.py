"""The learners (local, perturbation, shared-critic, DDPG), their critics, value function,
replay, optimiser and the graphed learner. Import leaky.model, leaky.core and the kernels.

Layer rules: docs/layout.md."""
