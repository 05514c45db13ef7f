"""Deep Ritz training of K seeds of one configuration as one packed model.

One step (the paper's "epoch"): sample each member's points from its seed → forward with
derivative streams → energy density + boundary penalty, eq. (4)-(5) → one backward → masked Adam
→ cosine schedule. The loss is the sum over members of each member's mean, so each member's
gradient is the one it would have alone. Nothing is read back from the device per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from drm import autotune
from drm._allocator import keep_freed_memory
from drm._fused import FusedPasses, fused_passes
from drm.activations import Activation
from drm.config import TrainConfig
from drm.counts import count_bands, count_transitions_on_device
from drm.features import FourierMap
from drm.network import PackedMLP
from drm.optim import PackedAdam, cosine_lr
from drm.pack import Pack
from drm.problems import get_problem
from drm.streams import StreamLayout


def build_model(
    config: TrainConfig, seeds: list[int], device: torch.device | str, dtype: torch.dtype, fourier: list[int] | None = None
) -> PackedMLP:
    """The packed model of `config` (resolved) with one member per seed, initialised from its seed.

    `fourier`: one frequency per member (a mixed pack), instead of config.fourier for all.
    """
    problem = get_problem(config.problem)
    features = FourierMap(problem.dim, fourier if fourier is not None else config.fourier, config.fourier_map)
    model = PackedMLP(seeds, problem.dim, config.depth, config.width, Activation(config.activation, config.rho), features)
    return model.to(device=device, dtype=dtype)


def member_loss(
    model: PackedMLP,
    pack: Pack,
    x: Tensor,
    x_boundary: Tensor,
    epsilon: Tensor,
    params: tuple[list[Tensor], list[Tensor]] | None = None,
    members: slice | None = None,
    fused: FusedPasses | None = None,
) -> tuple[Tensor, Tensor]:
    """Each member's Deep Ritz loss and its energy part: (K,), (K,).

    energy_mc = mean_N W(x, u, ∇u, u_2; ε);  loss = energy_mc + penalty · mean_Nb u(x_b)².
    x (K, N, d), x_boundary (K, Nb, d), epsilon (K, 1) of the members evaluated.
    `params` and `members`: evaluate only these members (`model.member_params(members)`).
    `fused`: the hidden layers' elementwise passes compiled for this step's layout (drm._fused).
    """
    jet = model.jet(x, x_boundary, pack.second_axis, params, members, fused)
    energy_mc = pack.problem.density(x, jet.u, jet.grad, jet.u_2, epsilon).mean(dim=1)  # (K,)
    loss = energy_mc + pack.config.penalty * jet.u_boundary.square().mean(dim=1)
    return loss, energy_mc


@dataclass
class Curves:
    """Learning curves at `steps`: loss, energy_mc and transitions per member (n_log, K), and the lr.

    The transitions are counted on the domain's cheap curve grid (1,025 nodes on [0, 1], or on the
    middle line in 2D), not the 20,001 / 4,097 nodes of the final count, so that counting costs
    training little; on a resolved profile both agree."""

    steps: np.ndarray
    loss: np.ndarray
    energy_mc: np.ndarray
    lr: np.ndarray
    transitions: np.ndarray
    bands: np.ndarray | None = None  # (n_log, K) where counts are images (2D): about five points and the last, -1 elsewhere


_WARMUP_STEPS = 3  # eager steps before a CUDA graph is captured
MIN_EPOCHS_TO_FUSE = 2_000  # a shorter run keeps the eager passes: compiling costs seconds, a tiny run less
_BAND_POINTS = 5  # curve points (besides the last) whose bands are counted: each reads an image back


def _layout(config: TrainConfig, second_axis: int | None) -> StreamLayout:
    """The stream rows of one member's step (drm.network.PackedMLP.jet lays them out the same)."""
    problem = get_problem(config.problem)
    return StreamLayout(config.batch, config.batch + config.boundary_batch, problem.dim, second_axis)


def _per_member_bytes(config: TrainConfig, dtype: torch.dtype, second: bool) -> int:
    """One member's (T, H) activation of a layer."""
    return _layout(config, 0 if second else None).rows * config.width * torch.empty((), dtype=dtype).element_size()


def _shape(config: TrainConfig, second: bool) -> str:
    """What a step's speed depends on besides K: the stream rows, the network and its activation."""
    layout = _layout(config, 0 if second else None)
    fourier = "none" if config.fourier is None else config.fourier_map  # the first layer's inputs (any frequency, 0 too, has the same)
    return (f"{config.problem} rows {layout.rows} (N {layout.n_interior}, Nv {layout.n_value}, d {layout.dim}, 2nd {second}) "
            f"depth {config.depth} width {config.width} map {fourier} {config.activation}")


def members_at_once(config: TrainConfig, K: int, device: str) -> int:
    """How many of K members of `config` may run their forward and backward together on `device`: all
    on a GPU; on a CPU the largest chunk a measurement may choose (`drm.autotune.max_members`), what
    the memory checks assume."""
    c = config.resolve()
    dtype = torch.float64 if c.dtype == "float64" else torch.float32
    return K if torch.device(device).type != "cpu" else autotune.max_members(_per_member_bytes(c, dtype, c.needs_u2), K)


class PackedTrainer:
    """Trains the seeds of one resolved configuration together; `train_step()` reads top to bottom.

    `config` may also be one configuration per seed (a mixed pack): members may then differ in
    their map's frequency and in ε (`drm.config.check_pack`), each training as it would alone.

    On CUDA (`graphed` None, the default, or True) one step is captured once as a CUDA graph and
    replayed: a small network's step is a few hundred short kernels, and replaying them skips their
    launch cost. The graph and the eager path run the same `_device_step`. On a CPU, or if the
    capture fails, steps run eagerly; `step_mode` says which, and why.

    On a CPU the members run in chunks (`drm.autotune`): `tuning` None takes the fixed rule's size,
    a Tuning the size it names, "measure" times the candidates now, and a TuningCache reads the size measured before for this
    CPU and shape, or times them (runs of MIN_EPOCHS_TO_TUNE steps or more) and keeps the choice. A
    measurement also times the step with fewer of the process's threads and keeps fewer when clearly
    faster. `self.tuning` (and `step_mode`) say which size and threads, and how they were chosen.

    `fuse`: the hidden layers' elementwise passes compiled into one kernel each way (drm._fused);
    None (the default) fuses runs of MIN_EPOCHS_TO_FUSE steps or more, whose compile time pays.
    Where compiling fails the eager passes run; `self.passes` (and `step_mode`) say which.

    `say` is told, in a few words, what takes time before the first step: a compile, the timing of
    the candidates (seconds to minutes on a fresh machine), so that a progress display can show it.
    """

    def __init__(
        self, config: TrainConfig | list[TrainConfig] | Pack, seeds: list[int] | None = None, device: str | torch.device = "cpu",
        graphed: bool | None = None, tuning: autotune.Tuning | autotune.TuningCache | str | None = None, fuse: bool | None = None,
        say: Callable[[str], None] | None = None,
    ):
        self.pack = config if isinstance(config, Pack) else Pack.of(config, seeds)
        self.configs = list(self.pack.configs)
        self.config = self.pack.config  # what every member shares (all but fourier and ε in a mixed pack)
        self.mixed = self.pack.mixed
        self.problem = self.pack.problem
        self.device = torch.device(device)
        if graphed and self.device.type != "cuda":
            raise ValueError("graphed=True needs a CUDA device")
        self.graphed = self.device.type == "cuda" if graphed is None else graphed
        self.step_mode = "graphed (one CUDA graph per step)" if self.graphed else f"eager ({self.device.type})"
        if self.device.type == "cpu":
            keep_freed_memory()
        self.dtype = getattr(torch, self.config.dtype)
        fourier = self.pack.fourier if self.mixed else None
        self.model = build_model(self.config, list(self.pack.seeds), self.device, self.dtype, fourier)
        self.epsilon = self.pack.epsilon(self.device)  # (K, 1), float64
        self.optimizer = PackedAdam(list(self.model.parameters()))
        self.seeds = torch.tensor(self.model.seeds, device=self.device, dtype=torch.int64)
        K = self.model.K
        # Device-side state: a step touches only these, so it can be captured and replayed.
        self.t = torch.zeros((), dtype=torch.int64, device=self.device)
        self.active = torch.ones(K, dtype=torch.bool, device=self.device)
        self.diverged_step = torch.full((K,), -1, dtype=torch.int64, device=self.device)
        self.last_loss = torch.full((K,), float("nan"), dtype=self.dtype, device=self.device)
        self.last_energy_mc = torch.full_like(self.last_loss, float("nan"))
        self.step = 0  # the host's count of the steps taken (no read-back needed)
        epochs = self.config.epochs
        self.log_every = max(1, epochs // self.config.log_points)
        n_log = (epochs - 1) // self.log_every + 1 + (1 if (epochs - 1) % self.log_every else 0)  # and the last step
        self._curve_buf = torch.full((n_log, 2, K), float("nan"), dtype=self.dtype, device=self.device)
        self._curve_counts = torch.full((n_log, K), -1, dtype=torch.int64, device=self.device)
        self._curve_points = self.problem.domain.curve_points(self.problem.oscillation_axis, self.dtype, self.device)
        # Bands need connected components, counted on the host on the measurement grid's image: read back
        # at every `_bands_every`-th curve point and the last (about six per run, never per step).
        self._curve_image = self.problem.domain.curve_image(self.dtype, self.device)
        self._bands_every = -(-n_log // _BAND_POINTS)
        self._curve_bands: dict[int, list[int]] = {}  # curve point -> each member's bands
        self._curve_steps: list[int] = []
        self._curve_lr: list[float] = []
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warm_steps = 0
        self._fused, self.passes = self._fuse(fuse, say)
        self.tuning = self._tune(tuning, say)
        self._chunks = self.tuning.chunks(K)
        if self.device.type == "cpu":
            self.step_mode = f"eager (cpu; {self.passes}; {self.tuning.describe()})"
        else:
            self.step_mode += f"; {self.passes}"
        self._fixed_points = None if self.config.resample else self._sample(torch.zeros_like(self.t))

    def _fuse(self, fuse: bool | None, say: Callable[[str], None] | None) -> tuple[FusedPasses | None, str]:
        if fuse is False or (fuse is None and self.config.epochs < MIN_EPOCHS_TO_FUSE):
            return None, "eager passes" if fuse is False else f"eager passes ({self.config.epochs} steps: too few to compile)"
        layout = _layout(self.config, self.pack.second_axis)
        return fused_passes(self.model.activation, layout, self.config.width, self.device, self.dtype, say)

    def _tune(self, tuning: autotune.Tuning | autotune.TuningCache | str | None, say: Callable[[str], None] | None) -> autotune.Tuning:
        """Members a chunk (and threads): one chunk on a GPU; on a CPU the rule's size, a cached or a
        measured one (`drm.autotune.measure`: the chunk, then the eager passes against the fused, then fewer threads)."""
        K = self.model.K
        if self.device.type != "cpu":
            return autotune.Tuning(K, f"fixed (one chunk on {self.device.type})")
        per_member = _per_member_bytes(self.config, self.dtype, self.pack.needs_u2)
        rule, largest = autotune.fixed_members(per_member, K), autotune.max_members(per_member, K)
        sizes = autotune.candidates(largest, rule)
        if isinstance(tuning, autotune.Tuning):  # chosen by the caller
            if not 1 <= tuning.members <= K:
                raise ValueError(f"tuning: {tuning.members} members a chunk; allowed: 1 to K = {K}")
            if tuning.threads is not None and tuning.threads < 1:
                raise ValueError(f"tuning: {tuning.threads} threads; allowed: 1 or more, or None (the process's)")
            return tuning
        if tuning is None:
            return autotune.Tuning(rule, "fixed (12 MiB rule)" if len(sizes) > 1 else "fixed (the only size)")
        if tuning != "measure" and not isinstance(tuning, autotune.TuningCache):
            raise ValueError(f"tuning: {tuning!r}; allowed: None, 'measure' or a TuningCache")
        cache = tuning if isinstance(tuning, autotune.TuningCache) else None
        key = autotune.cache_key(_shape(self.config, self.pack.needs_u2), K, self.dtype)
        entry = cache.get(key) if cache is not None else None
        if entry is not None and entry["members"] <= largest:
            if entry.get("eager_faster") is True and self._fused is not None:
                self._fused, self.passes = None, f"eager passes (faster here than fused: cached in {cache.path.name})"
            threads = entry.get("threads")  # an entry of before the threads were timed has none: the process's
            threads = threads if isinstance(threads, int) and 1 <= threads <= torch.get_num_threads() else None
            return autotune.Tuning(entry["members"], f"cached in {cache.path.name}", threads=threads)
        if cache is not None and self.config.epochs < autotune.MIN_EPOCHS_TO_TUNE:
            return autotune.Tuning(rule, f"fixed (12 MiB rule: {self.config.epochs} steps are too few to time {len(sizes)} sizes)")
        if say is not None:
            say("tuning the step" + (" (once per CPU and shape)" if cache is not None else ""))
        sandbox = PackedTrainer(self.pack, device=self.device, graphed=False, fuse=self._fused is not None)  # timed instead: this one's state stays
        compiled = sandbox._fused

        def step(members: int, fused: bool, threads: int | None) -> None:
            sandbox._chunks, sandbox._fused = autotune.Tuning(members, "").chunks(K), compiled if fused else None
            with autotune.threads(threads):
                sandbox._device_step()

        found = autotune.measure(step, sizes, rule, fused=compiled is not None)
        if self._fused is not None and not found.fused:
            self._fused, self.passes = None, f"eager passes (faster here than fused: {found.eager_faster})"
        kept = None if cache is None else cache.put(key, found.entry(rule))
        return autotune.Tuning(found.members, "measured" if kept is None else f"measured (not cached: {kept})", found.seconds_per_step,
                               found.threads, found.seconds_per_step_by_threads, found.paired)

    def _sample(self, t: Tensor) -> tuple[Tensor, Tensor]:
        c, domain = self.config, self.problem.domain
        return (
            domain.interior_points(self.seeds, t, c.batch, self.dtype),
            domain.boundary_points(self.seeds, t, c.boundary_batch, self.dtype),
        )

    def points(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Interior (K, N, d) and boundary (K, Nb, d) points of step t (of step 0 when not resampling)."""
        return self._fixed_points if self._fixed_points is not None else self._sample(t)

    def _device_step(self) -> None:
        """Sample → forward with derivative streams → energy + penalty → backward → masked Adam, chunk by chunk."""
        c = self.config
        x, x_boundary = self.points(self.t)
        lr = cosine_lr(c.lr, self.t, c.epochs)
        self.optimizer.count_step()
        for members in self._chunks:
            weights, biases = self.model.member_params(members)
            loss, energy_mc = member_loss(
                self.model, self.pack, x[members], x_boundary[members], self.epsilon[members], (weights, biases), members, self._fused
            )
            was_active, finite = self.active[members], torch.isfinite(loss)  # (k,) each
            self.diverged_step[members] = torch.where(was_active & ~finite, self.t, self.diverged_step[members])
            active = was_active & finite  # a member whose loss turned non-finite is frozen from this step on
            self.active[members] = active
            grads = torch.autograd.grad(torch.where(active, loss, 0.0).sum(), weights + biases)
            self.optimizer.update(lr, active, list(grads), members)
            self.last_loss[members] = loss.detach()
            self.last_energy_mc[members] = energy_mc.detach()
        self.t += 1

    def train_step(self) -> None:
        """One optimiser step for every active member (replayed from a CUDA graph when graphed), with the
        threads the tuning chose (drm.autotune.threads: the process's own are restored after)."""
        with autotune.threads(self.tuning.threads):
            if self.graphed:
                self._graphed_step()
            else:
                self._device_step()
            if self.step % self.log_every == 0 or self.step == self.config.epochs - 1:  # the last step too: where the count ends
                self._log_point()
        self.step += 1

    def _log_point(self) -> None:
        """A learning-curve point: loss, energy_mc and transitions on the device; bands now and then."""
        point = len(self._curve_steps)
        self._curve_buf[point] = torch.stack([self.last_loss, self.last_energy_mc])
        self._curve_counts[point] = self._count()
        if self._curve_image is not None and (point % self._bands_every == 0 or self.step == self.config.epochs - 1):
            self._curve_bands[point] = self._bands()
        self._curve_steps.append(self.step)
        self._curve_lr.append(float(cosine_lr(self.config.lr, self.step, self.config.epochs)))

    def _graphed_step(self) -> None:
        # torch.cuda.graph's recipe: a few eager warm-up steps on a side stream, then capture once,
        # then replay. The state a step writes exists before the capture; what it allocates (the
        # gradients among them) comes from the graph's own pool, the same memory at every replay.
        if self._graph is None:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                if self._warm_steps < _WARMUP_STEPS:
                    self._warm_steps += 1
                    self._device_step()
                else:
                    self._capture(side)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if self._graph is None:
                return
        self._graph.replay()

    def _capture(self, side: torch.cuda.Stream) -> None:
        """Capture one step as a CUDA graph; where that is impossible, take this and every later step eagerly."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=side):
                self._device_step()
        except RuntimeError as e:  # a kernel or an allocation that cannot be captured: say so, go on eagerly
            self.graphed = False
            self.step_mode = f"eager (CUDA graph capture failed: {(str(e).splitlines() or [type(e).__name__])[0][:200]}); {self.passes}"
            self._device_step()
            return
        self._graph = graph

    def run(self, steps: int | None = None, progress: Callable[[int, int], None] | None = None, every_s: float = 1.0) -> None:
        """Train up to `steps` more steps (default: to the end); call progress(step, total) as they start,
        then about every `every_s` and at the end."""
        end = self.config.epochs if steps is None else min(self.config.epochs, self.step + steps)
        if progress is not None:
            progress(self.step, self.config.epochs)
        last = time.perf_counter()
        with autotune.threads(self.tuning.threads):  # set once for the run: each step then finds them set
            while self.step < end:
                self.train_step()
                if progress is not None and time.perf_counter() - last >= every_s:
                    progress(self.step, self.config.epochs)
                    last = time.perf_counter()
        if progress is not None:
            progress(self.step, self.config.epochs)

    def _count(self) -> Tensor:
        """Each member's transitions now, on the curve grid, on the device (nothing is read back): (K,)."""
        from drm.measurement import evaluate

        du = evaluate(self.model, self._curve_points, None)[1][..., self.problem.oscillation_axis]  # (K, n), in chunks
        return count_transitions_on_device(du, self.config.transition_threshold)

    def _bands(self) -> list[int]:
        """Each member's bands now, on the domain's curve image (read back to the host): K counts."""
        from drm.measurement import evaluate

        points, shape = self._curve_image
        du = evaluate(self.model, points, None)[1][..., self.problem.oscillation_axis]  # (K, ny·nx), in chunks
        return count_bands(du.reshape(self.model.K, *shape).cpu().numpy(), self.config.transition_threshold).tolist()

    def curves(self) -> Curves:
        n = len(self._curve_steps)
        buf = self._curve_buf[:n].cpu().numpy()  # (n, 2, K)
        counts = self._curve_counts[:n].cpu().numpy()  # (n, K)
        bands = None
        if self._curve_image is not None:  # -1 (null): a point whose bands were not counted
            bands = np.full((n, self.model.K), -1, dtype=np.int64)
            for point, counted in self._curve_bands.items():
                bands[point] = counted
        return Curves(np.array(self._curve_steps), buf[:, 0], buf[:, 1], np.array(self._curve_lr), counts, bands)

    def status(self) -> list[str]:
        return ["ok" if a else "diverged" for a in self.active.cpu().tolist()]

    def _config_record(self) -> dict | list[dict]:
        return [c.as_dict() for c in self.configs] if self.mixed else self.config.as_dict()

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly (the points need no state: they are (seed, step))."""
        return {
            "config": self._config_record(),
            "seeds": self.model.seeds,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "t": self.t.clone(),
            "step": self.step,
            "active": self.active.clone(),
            "diverged_step": self.diverged_step.clone(),
            "last_loss": self.last_loss.clone(),
            "last_energy_mc": self.last_energy_mc.clone(),
            "curve_buf": self._curve_buf.clone(),
            "curve_counts": self._curve_counts.clone(),
            "curve_bands": {point: list(b) for point, b in self._curve_bands.items()},
            "curve_steps": list(self._curve_steps),
            "curve_lr": list(self._curve_lr),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` of a trainer of the same configuration and seeds."""
        if state["config"] != self._config_record() or list(state["seeds"]) != self.model.seeds:
            raise ValueError("the checkpoint belongs to another configuration or other seeds")
        with torch.no_grad():
            for name, value in state["model"].items():
                self.model.state_dict()[name].copy_(value)
            for name in ("t", "active", "diverged_step", "last_loss", "last_energy_mc"):
                getattr(self, name).copy_(state[name])
            self._curve_buf.copy_(state["curve_buf"])
            if "curve_counts" in state:  # a checkpoint of 0.1 has none: its points stay uncounted (-1, null)
                self._curve_counts.copy_(state["curve_counts"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self._curve_steps = list(state["curve_steps"])
        self._curve_lr = list(state["curve_lr"])
        self._curve_bands = {int(point): list(b) for point, b in state.get("curve_bands", {}).items()}
