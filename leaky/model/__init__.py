"""The network: its configuration, the network itself, and Theorem 2.2.1's per-neuron check.
Imports leaky.core and the kernels.

Layer rules: docs/layout.md."""
