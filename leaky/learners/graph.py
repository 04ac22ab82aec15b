"""Fixed launch programs: the device work of an environment step, captured once into CUDA graphs.

On the GPU an environment step of the eager :class:`~leaky.learners.local.LocalLearner` is about 28
small CuPy operations, copies and kernel launches and five host synchronisations (noise,
validation, encoding, the step, decoding, building transitions, the update, reading
diagnostics; counted from the code), each launch paying its host-side dispatch.
:class:`GraphedLocalLearner` does the same arithmetic as a constant number of Numba kernel
launches on preallocated arrays, independent of ℓ and N (``kernels/loop.py``):

=========  ========================================================  =========
program    kernels                                                    launches
=========  ========================================================  =========
act        prepare (noise ξ, encoded sensors) · step · decode         3
boot       prepare · step from the truncated rows' last voltages      2 (only on steps where an
                                                                        episode is truncated)
learn      transitions (+ Adam step) · fused local update             2
=========  ========================================================  =========

A :class:`Program` runs its launches eagerly the first time (which compiles the kernels) and,
on a real GPU, captures them into a CUDA graph on its own CuPy stream the second time (Numba
kernels launched on that stream through ``numba.cuda.external_stream``), replaying the graph
from then on. What changes between replays (the noise counter, the Adam step and its scalars)
lives in device memory and is advanced by the kernels themselves. In Numba's CUDA simulator
there is nothing to capture: the programs run eagerly, which is how the tests check them
against the eager learner number for number.

Choose it with ``LocalConfig(graph=True)`` (``leaky train --backend cuda --set graph=true``).
It supports the online data path with per-neuron own critics (``family`` advantage or linear,
``baseline="own"``, ``actor_neurons="all"``); other options raise :class:`ConfigError`.
Noise comes from the counter-based generator of ``kernels/noise.py``, not CuPy's, so a graphed
run draws different noise than an eager one with the same seed.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from leaky.core.backend import to_numpy
from leaky.core.errors import ConfigError
from leaky.kernels import loop as lk
from leaky.kernels import step as sk
from leaky.kernels import update_local as ul
from leaky.kernels.spec import Launch
from leaky.learners.local import LocalConfig, LocalLearner
from leaky.model.network import Network, StepCache


class Stream:
    """Where programs run: a CuPy stream (and its Numba view) on a GPU, the default stream in the
    simulator. Copies into program buffers go through :meth:`put`, on this stream."""

    def __init__(self, xp):
        self.xp = xp
        self.on_gpu = xp is not np
        if self.on_gpu:
            from numba import cuda

            self.cupy = xp.cuda.Stream(non_blocking=True)
            self.numba = cuda.external_stream(self.cupy.ptr)
        else:
            self.cupy = None
            self.numba = 0

    def device_array(self, a):
        """The kernel argument for a backend array: a Numba view of a CuPy array (made without
        the stream synchronisation a CuPy array would trigger at every launch, which is not
        allowed while capturing); NumPy arrays and scalars pass through."""
        if self.on_gpu and isinstance(a, self.xp.ndarray):
            from numba import cuda

            return cuda.as_cuda_array(a, sync=False)
        return a

    def after_default(self) -> None:
        """Order this stream after the work already queued on the default stream."""
        if self.on_gpu:
            self.cupy.wait_event(self.xp.cuda.Stream.null.record())

    def put(self, dst, src) -> None:
        """``dst[...] = src`` on this stream (``src``: a host or backend array)."""
        if self.on_gpu:
            with self.cupy:
                dst[...] = self.xp.asarray(src, dtype=dst.dtype)
        else:
            dst[...] = src

    def synchronize(self) -> None:
        if self.on_gpu:
            self.cupy.synchronize()


class Program:
    """A fixed sequence of kernel launches on preallocated arrays.

    ``launch()`` runs it: eagerly on its first call (compiling the kernels), then, on a GPU with
    ``capture=True``, captures it into a CUDA graph once and replays the graph.
    """

    def __init__(self, name: str, launches: list[Launch], stream: Stream, capture: bool = True):
        self.name = name
        self.stream = stream
        self.launches = [Launch(l.kernel, l.grid, l.block, tuple(stream.device_array(a) for a in l.args))
                         for l in launches]
        self.capture = capture and stream.on_gpu
        self.graph = None
        self.calls = 0

    def __len__(self) -> int:
        return len(self.launches)

    def run(self) -> None:
        """Every launch, eagerly, on the program's stream."""
        for l in self.launches:
            l.kernel[l.grid, l.block, self.stream.numba](*l.args)

    def launch(self) -> None:
        if self.graph is None and self.capture and self.calls >= 1:
            self.graph = self._captured()
        if self.graph is not None:
            self.graph.launch(stream=self.stream.cupy)
        else:
            self.run()
        self.calls += 1

    def _captured(self):
        s = self.stream.cupy
        with s:                    # CuPy's current stream while capturing, as its docs do
            s.begin_capture()
            try:
                self.run()
            finally:
                graph = s.end_capture()
        return graph

    def kernel_nodes(self) -> int | None:
        """Kernel nodes of the captured graph (None before capture), counted in CUDA's DOT dump
        of it; equals ``len(self)`` when the capture holds exactly the program's launches."""
        if self.graph is None:
            return None
        import cupy

        verbose = getattr(cupy.cuda.runtime, "cudaGraphDebugDotFlagsVerbose", 1)
        return count_kernel_nodes(self.graph.debug_dot_str(verbose))


def count_kernel_nodes(dot) -> int:
    """Kernel nodes in a DOT dump of a CUDA graph (``cudaGraphDebugDotPrint``).

    With the verbose flag every node's label opens with its type (``label="{KERNEL\n|…``,
    ``{MEMCPY``, ``{MEMSET``…); without it a kernel node is drawn as an octagon and its label
    is its id and the kernel's name, so the word KERNEL need not appear at all.
    """
    if isinstance(dot, bytes):
        dot = dot.decode("utf-8", "replace")
    types = re.findall(r'label="\{([A-Z][A-Z_ ]*)\s*[\n|]', dot)
    if types:
        return sum(t.strip() == "KERNEL" for t in types)
    return len(re.findall(r'shape="octagon"', dot))


@dataclass
class _Buffers:
    """Every array the programs of one batch size read or write (backend arrays)."""

    V_in: Any
    obs: Any
    u: Any
    xi: Any
    action: Any
    caches: list          # two StepCaches, alternating between environment steps
    boot: list            # two bootstrap caches (truncated rows)
    final_obs: Any
    u_boot: Any
    xi_boot: Any
    reward: list
    terminated: list
    boot_rows: list
    Vn: Any
    yn: Any
    r: Any
    cont: Any
    work: Any
    counter: Any          # int64 (1,): the noise counter
    adam_step: Any        # int64 (1,)
    sched: Any            # float32 (2,): Adam's step size and eps_hat of the current step


class GraphedLocalLearner(LocalLearner):
    """:class:`~leaky.learners.local.LocalLearner` whose per-step device work is three fixed programs.

    Same protocol (``act``, ``observe``, ``update``, ``state_dict``) and the same arithmetic as
    the eager learner given the same noise; greedy actions (``explore=False``) use the eager path.
    """

    SEED_STREAM_ACT = 0
    SEED_STREAM_BOOT = 1

    def __init__(self, net: Network, cfg: LocalConfig):
        if not cfg.graph:
            cfg = dataclasses.replace(cfg, graph=True)   # validates the captured option set
        if net.backend.name != "cuda":
            raise ConfigError(f"LocalConfig.graph=True: needs backend='cuda' (CUDA graphs), got "
                              f"backend={net.backend.name!r}")
        super().__init__(net, cfg)
        be = net.backend
        self.stream = Stream(net.xp)
        self.std = be.asarray(self.noise_std)
        self.seed32 = np.uint32(cfg.seed & 0xFFFFFFFF)
        self.counter = be.zeros(1, dtype=np.int64)
        self.adam_step_dev = be.zeros(1, dtype=np.int64)
        self._built_for = None
        self._slot = 0            # the cache slot of the latest act
        self._phase = "act"       # act → observe → update
        self._have_prev = False   # a completed step waits to be learned

    # -- building ---------------------------------------------------------------------------

    def _key(self, B):
        net = self.net
        return (B, id(net.K), id(net.b), id(self.theta), id(self.theta_bar), id(self.adam_m), id(self.adam_v))

    def _ensure(self, B: int) -> None:
        if self._built_for == self._key(B):
            return
        self._build(B)
        self._built_for = self._key(B)

    def _build(self, B: int) -> None:
        net, cfg, be = self.net, self.cfg, self.net.backend
        N, ell, n_in, n_out = net.n_neurons, net.delay, net.config.n_inputs, net.config.n_outputs

        def cache():
            return StepCache(be.empty((ell + 1, B, N)), be.empty((ell, B, N)), be.empty((ell, B, N)),
                             be.empty((ell, B, N)))

        scale, shift = net._encoder if net._encoder is not None else (be.zeros(n_in) + 1, be.zeros(n_in))
        half, mid = net._decoder if net._decoder is not None else (be.zeros(n_out) + 1, be.zeros(n_out))
        buf = _Buffers(
            V_in=be.zeros((B, N)), obs=be.zeros((B, n_in)), u=be.zeros((B, n_in)), xi=be.zeros((ell, B, N)),
            action=be.zeros((B, n_out)), caches=[cache(), cache()], boot=[cache(), cache()],
            final_obs=[be.zeros((B, n_in)), be.zeros((B, n_in))], u_boot=be.zeros((B, n_in)),
            xi_boot=be.zeros((ell, B, N)), reward=[be.zeros(B), be.zeros(B)],
            terminated=[be.zeros(B), be.zeros(B)], boot_rows=[be.zeros(B), be.zeros(B)],
            Vn=be.zeros((ell, B, N)), yn=be.zeros((ell, B, N)), r=be.zeros((ell, B)), cont=be.zeros((ell, B)),
            work=be.zeros((N, 2, ell * B)), counter=self.counter, adam_step=self.adam_step_dev,
            sched=be.zeros(2))
        self.buf = buf
        flags = sk.StepFlags(n_in, net._activation, net._inhibition, net.config.kappa, net._pulse)
        snet = sk.StepNet(net.K, net.b, net.leak, net.col_lo, net.col_hi, net._tile_lo_dev, net._tile_hi_dev)

        def prepare(stream_id, xi, obs, u):
            return lk.prepare_launch(self.seed32, stream_id, buf.counter, self.std, xi, obs, scale, shift, u)

        def step(V0, u, xi, out):
            return sk.step_launch(V0, u, xi, snet, flags, sk.StepOut(out.V, out.z, out.y, out.alpha))

        optimizer = self.ucfg.codes[3]
        u = self.ucfg
        # the Adam scalars of step 1 stand in: the captured update reads them from buf.sched
        update_scalars = u.scalars(n_in, self.activation, 1)
        self.act_programs, self.boot_programs, self.learn_programs = [], [], []
        for s in (0, 1):
            c, p = buf.caches[s], buf.caches[1 - s]
            self.act_programs.append(Program(f"act[{s}]", [
                prepare(self.SEED_STREAM_ACT, buf.xi, buf.obs, buf.u),
                step(buf.V_in, buf.u, buf.xi, c),
                lk.decode_launch(c.V[ell], half, mid, buf.action, buf.counter),
            ], self.stream))
            self.boot_programs.append(Program(f"boot[{s}]", [
                prepare(self.SEED_STREAM_BOOT, buf.xi_boot, buf.final_obs[s], buf.u_boot),
                step(c.V[ell], buf.u_boot, buf.xi_boot, buf.boot[s]),
            ], self.stream))
            # learn[s]: the transition of the step in slot 1-s, whose next step is in slot s
            q = 1 - s
            self.learn_programs.append(Program(f"learn[{s}]", [
                lk.transitions_launch(
                    V_t=p.V, y_t=p.y, V_next=c.V, y_next=c.y, V_boot=buf.boot[q].V, y_boot=buf.boot[q].y,
                    reward=buf.reward[q], terminated=buf.terminated[q], boot_rows=buf.boot_rows[q],
                    gamma_slice=cfg.gamma if cfg.clock == "causal" else cfg.gamma ** (1.0 / ell),
                    reward_scale=cfg.reward_scale, causal=cfg.clock == "causal", adam_step=buf.adam_step,
                    sched=buf.sched, optimizer=optimizer, lr_critic=u.lr_critic, beta1=u.beta1,
                    beta2=u.beta2, eps=u.eps, Vn=buf.Vn, yn=buf.yn, r_out=buf.r, cont_out=buf.cont),
                # delta: the update reads no shared TD error here (baseline "own"); r stands in
                ul.update_local_launch(
                    ul.Transitions(p.V[:ell], p.y, p.alpha, buf.Vn, buf.yn, buf.r, buf.cont, buf.r),
                    self._topology(), ul.ActorRows(net.K, net.b), self._critic(), update_scalars,
                    ul.UpdateOut(self.diag, buf.work), buf.sched),
            ], self.stream))

    @property
    def launches_per_step(self) -> dict:
        """Kernel launches of each program (built on the first ``act``)."""
        return {"act": len(self.act_programs[0]), "boot": len(self.boot_programs[0]),
                "learn": len(self.learn_programs[0])}

    # -- the learner protocol ------------------------------------------------------------------

    def act(self, V, obs, explore: bool = True):
        if not explore:
            return super().act(V, obs, explore=False)
        if self._phase == "observe":
            raise RuntimeError("act() called twice without observe(): the graphed learner keeps one step in flight")
        net = self.net
        V = net._check_array("V", V, (None, net.n_neurons))
        B = V.shape[0]
        obs = net._check_array("obs", obs, (B, net.config.n_inputs), finite=True)
        self._ensure(B)
        if self._phase == "update":      # update() was skipped: nothing to learn from that step
            self._have_prev = False
        s = 1 - self._slot if self._have_prev else self._slot
        st, buf = self.stream, self.buf
        st.after_default()
        st.put(buf.V_in, V)
        st.put(buf.obs, obs)
        self.act_programs[s].launch()
        st.synchronize()
        self._slot = s
        self._phase = "observe"
        c = buf.caches[s]
        self.last_noise = buf.xi
        self.last_cache = c
        return c.V[net.delay].copy(), buf.action.copy()

    def observe(self, obs, action, reward, next_obs, terminated, truncated, V_start, V_end):
        if self._phase != "observe":
            raise RuntimeError("observe() called before act(explore=True)")
        s, st, buf = self._slot, self.stream, self.buf
        terminated = np.asarray(terminated, dtype=bool)
        boot = np.asarray(truncated, dtype=bool) & ~terminated
        st.put(buf.reward[s], np.asarray(reward, dtype=np.float32))
        st.put(buf.terminated[s], terminated.astype(np.float32))
        st.put(buf.boot_rows[s], boot.astype(np.float32))
        if boot.any():
            st.put(buf.final_obs[s], self.net._check_array("next_obs", next_obs, (buf.obs.shape[0], self.net.config.n_inputs),
                                                           finite=True))
            self.boot_programs[s].launch()
        self._phase = "update"

    def update(self) -> dict:
        if self._phase != "update":
            return {}
        self._phase = "act"
        had_prev, self._have_prev = self._have_prev, True
        if not had_prev:
            return {}
        self.learn_programs[self._slot].launch()
        self.stream.synchronize()
        self.updates += 1
        self.adam_step += 1
        agents = slice(self.net.config.n_inputs, self.net.n_neurons)
        d = self.diag[agents]
        return {"td_error": float(d[:, 1].mean()), "slope": float(self.net.xp.abs(d[:, 2]).mean())}

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["noise_counter"] = int(to_numpy(self.counter)[0])
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        be = self.net.backend
        self.counter[...] = be.asarray([int(state.get("noise_counter", 0))], dtype=np.int64)
        self.adam_step_dev[...] = be.asarray([self.adam_step], dtype=np.int64)
        self._phase, self._have_prev, self._built_for = "act", False, None

