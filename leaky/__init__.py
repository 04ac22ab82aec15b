"""leaky: recurrent neurocomputational agents on the GPU, every neuron a learning agent.

>>> import leaky
>>> net = leaky.Network.layered([3, 16, 1], backend="cpu")
>>> V = net.reset(batch=2)
>>> V, action, cache = net.step(V, [[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
>>> action.shape, cache.V.shape
((2, 1), (3, 2, 20))

The names below load on first use (PEP 562), so that ``import leaky.kernels.step`` loads the
kernels alone: no h5py, gymnasium or learner (docs/layout.md).
"""

import importlib

from leaky.core import threads as _threads

_threads.configure()  # BLAS and Numba on one thread unless the user says otherwise (leaky/core/threads.py)

__version__ = "0.1.0"

_EXPORTS = {
    "leaky.core.backend": ("Backend", "get_backend", "gpu_available", "to_numpy"),
    "leaky.model.config": ("NetworkConfig",),
    "leaky.core.errors": ("ConfigError", "DivergenceError", "InputError", "LeakyError", "TraceError"),
    "leaky.model.network": ("Network", "StepCache"),
    "leaky.learners.local": ("LocalConfig", "LocalLearner"),
    "leaky.learners.perturbation": ("PerturbationConfig", "PerturbationLearner"),
    "leaky.learners.ddpg": ("DDPGConfig", "DDPGLearner"),
    "leaky.learners.shared_critic": ("SharedCriticLearner",),
    "leaky.trace": ("Trace", "TraceReader", "export_minari", "open_trace"),
    "leaky.core.threads": ("blas_threads", "set_blas_threads", "set_numba_threads"),
    "leaky.training.loop": ("TrainConfig", "TrainResult", "train"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF) + ["__version__"]


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'leaky' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
