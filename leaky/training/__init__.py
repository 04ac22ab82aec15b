"""The training loop, the environments and sweeps. Imports the learners, the model, traces.

Layer rules: docs/layout.md."""
