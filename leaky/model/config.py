"""Configuration of a network: a frozen dataclass, validated when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

from leaky.core.errors import ConfigError
from leaky.kernels.scalar import ACTIVATIONS, INHIBITIONS

TOPOLOGIES = ("dense", "sparse", "layered")
INPUT_MODES = ("clamp", "pulse")


def _fail(name: str, got, expected: str):
    raise ConfigError(f"NetworkConfig.{name}: got {got!r}, expected {expected}")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that defines a network before its weights are drawn.

    Parameters
    ----------
    n_neurons : int
        N, all neurons including sensors. Sensors are neurons ``0 … n_inputs-1``, outputs the
        last ``n_outputs``.
    n_inputs, n_outputs : int
        Number of sensor and output neurons (``n_inputs + n_outputs <= n_neurons``).
    delay : int
        ℓ, internal steps per environment step (>= 1).
    leak : float or sequence of float
        λ in (0, 1], one value for all neurons or one per neuron. 1 is a plain recurrent net.
    activation : {"tanh", "relu", "identity"}
    inhibition : {"none", "divisive"}
        ``divisive``: ``y = z / (1 + kappa·mean|z|)`` over the non-sensor neurons of a row.
    kappa : float
        Strength of divisive inhibition (>= 0).
    input_mode : {"clamp", "pulse"}
        ``clamp`` holds the sensors at the encoded observation at every internal step;
        ``pulse`` adds it once at the start of the environment step (the paper's eq. 2.2.2).
    topology : {"dense", "sparse", "layered"}
        ``dense``: all-to-all; ``sparse``: ``fan_in`` random presynaptic neurons per neuron;
        ``layered``: the block sub-diagonal mask of an MLP with ``layer_sizes``.
    fan_in : int, optional
        Presynaptic neurons per neuron for ``sparse``.
    layer_sizes : sequence of int, optional
        ``[d_obs, h1, …, d_act]`` for ``layered`` (sums to ``n_neurons``).
    weight_scale : float
        Initial weights are ``N(0, weight_scale² / fan_in)`` on the mask.
    seed : int
        Seed of the weight initialisation (a NumPy PCG64 stream, the same on every backend).
    """

    n_neurons: int
    n_inputs: int
    n_outputs: int
    delay: int = 1
    leak: float | tuple[float, ...] = 1.0
    activation: str = "tanh"
    inhibition: str = "none"
    kappa: float = 1.0
    input_mode: str = "clamp"
    topology: str = "dense"
    fan_in: int | None = None
    layer_sizes: tuple[int, ...] | None = None
    weight_scale: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("n_neurons", "n_inputs", "n_outputs", "delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                _fail(name, value, "an int")
        if self.n_neurons < 1:
            _fail("n_neurons", self.n_neurons, "at least 1")
        if self.n_inputs < 0:
            _fail("n_inputs", self.n_inputs, "at least 0")
        if self.n_outputs < 1:
            _fail("n_outputs", self.n_outputs, "at least 1")
        if self.n_inputs + self.n_outputs > self.n_neurons:
            _fail("n_inputs", self.n_inputs,
                  f"n_inputs + n_outputs <= n_neurons = {self.n_neurons} (sensors and outputs "
                  f"are distinct neurons; n_outputs = {self.n_outputs})")
        if self.delay < 1:
            _fail("delay", self.delay, "at least 1 internal step per environment step")
        leak = self.leak
        if isinstance(leak, (list, tuple)) or hasattr(leak, "__len__"):
            leak = tuple(float(x) for x in leak)
            if len(leak) != self.n_neurons:
                _fail("leak", f"{len(leak)} values", f"one float or n_neurons = {self.n_neurons} values")
            object.__setattr__(self, "leak", leak)
        else:
            leak = (float(leak),)
            object.__setattr__(self, "leak", float(self.leak))
        bad = [x for x in leak if not (0.0 < x <= 1.0) or math.isnan(x)]
        if bad:
            _fail("leak", bad[0], "values in (0, 1]")
        if self.activation not in ACTIVATIONS:
            _fail("activation", self.activation, f"one of {sorted(ACTIVATIONS)}")
        if self.inhibition not in INHIBITIONS:
            _fail("inhibition", self.inhibition, f"one of {sorted(INHIBITIONS)}")
        if not (self.kappa >= 0.0 and math.isfinite(self.kappa)):
            _fail("kappa", self.kappa, "a finite value >= 0")
        if self.input_mode not in INPUT_MODES:
            _fail("input_mode", self.input_mode, f"one of {list(INPUT_MODES)}")
        if self.topology not in TOPOLOGIES:
            _fail("topology", self.topology, f"one of {list(TOPOLOGIES)}")
        if self.topology == "sparse":
            if self.fan_in is None or not (1 <= self.fan_in <= self.n_neurons):
                _fail("fan_in", self.fan_in, f"an int in [1, n_neurons = {self.n_neurons}] for topology='sparse'")
        if self.topology == "layered":
            sizes = self.layer_sizes
            if sizes is None or len(sizes) < 2:
                _fail("layer_sizes", sizes, "at least [d_obs, d_act] for topology='layered'")
            sizes = tuple(int(s) for s in sizes)
            object.__setattr__(self, "layer_sizes", sizes)
            if min(sizes[1:]) < 1 or sizes[0] < 0:
                _fail("layer_sizes", sizes, "positive layer sizes")
            if sum(sizes) != self.n_neurons:
                _fail("layer_sizes", sizes, f"sizes summing to n_neurons = {self.n_neurons}")
            if sizes[0] != self.n_inputs or sizes[-1] != self.n_outputs:
                _fail("layer_sizes", sizes, f"first = n_inputs = {self.n_inputs} and last = n_outputs = {self.n_outputs}")
        if not (self.weight_scale >= 0 and math.isfinite(self.weight_scale)):
            _fail("weight_scale", self.weight_scale, "a finite value >= 0")

    @classmethod
    def layered(cls, sizes: Sequence[int], **overrides) -> "NetworkConfig":
        """The config of an MLP ``[d_obs, h1, …, d_act]``: delay = layers, leak = 1, clamp."""
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2:
            raise ConfigError(f"layered: got sizes {sizes!r}, expected at least [d_obs, d_act]")
        kw = dict(n_neurons=sum(sizes), n_inputs=sizes[0], n_outputs=sizes[-1],
                  delay=len(sizes) - 1, leak=1.0, input_mode="clamp", topology="layered",
                  layer_sizes=sizes)
        kw.update(overrides)
        return cls(**kw)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
