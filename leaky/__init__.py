"""leaky: recurrent neurocomputational agents on the GPU, every neuron a learning agent.

>>> import leaky
>>> net = leaky.Network.layered([3, 16, 1], backend="cpu")
>>> V = net.reset(batch=2)
>>> V, action, cache = net.step(V, [[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])
>>> action.shape, cache.V.shape
((2, 1), (3, 2, 20))
"""

from leaky import threads as _threads

_threads.configure()  # BLAS and Numba on one thread unless the user says otherwise (leaky/threads.py)

from leaky.backend import Backend, get_backend, gpu_available, to_numpy  # noqa: E402
from leaky.config import NetworkConfig  # noqa: E402
from leaky.errors import ConfigError, DivergenceError, InputError, LeakyError, TraceError  # noqa: E402
from leaky.network import Network, StepCache  # noqa: E402
from leaky.trace import Trace, TraceReader, export_minari, open_trace  # noqa: E402
from leaky.threads import blas_threads, set_blas_threads, set_numba_threads  # noqa: E402
from leaky.train import TrainConfig, TrainResult  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Backend", "ConfigError", "DivergenceError", "InputError", "LeakyError", "Network",
    "NetworkConfig", "StepCache", "Trace", "TraceError", "TraceReader", "export_minari", "open_trace", "TrainConfig", "TrainResult", "get_backend",
    "gpu_available", "to_numpy", "blas_threads", "set_blas_threads", "set_numba_threads",
    "__version__",
]
