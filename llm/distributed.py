"""Data-parallel training on ``accelerate`` (DESIGN §9): what the LLM backend calls to run on many ranks.

Launch the same command on every rank — ``accelerate launch [--multi_gpu|--config_file F] -m
experiments.train --backend llm ...`` or ``torchrun --nproc_per_node N -m experiments.train ...`` —
and every rank runs the same algorithm loop with the same seeds and the same algorithm state.
What differs per rank is data only:

* **prompts**: each step's global prompt batch (chosen by the backend's generator, identical on every
  rank) is cut into ``world_size`` contiguous shards (:meth:`Parallel.shard`); the world size must
  divide it (:meth:`Parallel.check_divides`), so every rank runs the same number of forward/backward
  passes — DDP needs that — and the loss normalisation is exact;
* **samples and judgements** of a shard's prompts: ĝ is per prompt, so nothing crosses ranks but
  gradients and metric sums;
* **randomness**: every sampled row draws from its own generator, seeded from (seed, stream, draw
  counter, prompt index, sample index) (:meth:`Parallel.row_generators`): a row samples the same
  tokens whichever rank holds it and however rows are batched, so the N-rank run samples what the
  1-rank run samples (up to float rounding of the logits, which depends on the batch's padding).

Gradients are summed across ranks by the module accelerate prepared (DDP on CPU/gloo or GPUs/nccl,
FSDP by its config) during ``accelerator.backward`` — never by hand; the realiser divides losses by
the GLOBAL number of prompts (``StepBatch.n_groups_global``) and undoes DDP's averaging, so the
all-reduced gradient is the 1-rank gradient. Metrics are reduced over ranks (:meth:`Parallel.sum`,
:meth:`Parallel.mean`); only rank 0 writes files (:attr:`Parallel.is_main`). Nothing in a checkpoint
depends on the number of ranks, so a run checkpointed with 2 processes resumes with 1 (or 4).

Pitfalls measured on a 2-core CPU machine: ``accelerate launch --cpu --num_processes 2`` silently runs
ONE process — use ``--multi_gpu`` with ``Accelerator(cpu=True)`` (what :func:`setup` does on a
machine without CUDA), or ``torchrun``; give each rank ``OMP_NUM_THREADS`` = cores / ranks; never
a fixed port (``torchrun --standalone`` or ``--main_process_port 0``/:func:`free_port`).

One process (no launcher) needs nothing: :data:`SINGLE` is the identity (rank 0 of 1, no accelerator,
no collective calls), and it is what every backend uses by default.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import socket
from typing import Sequence

import numpy as np
import torch

from games import validation as V

#: stream ids of :meth:`Parallel.row_generators` (independent random streams of one run)
STREAMS = {"responses": 1, "opponents": 2, "evaluation": 3}


def launched() -> bool:
    """Whether this process was started by a multi-process launcher (WORLD_SIZE > 1 in the env)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for a rendezvous; never hard-code one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def row_seed(seed: int, stream: int, counter: int, prompt: int, sample: int) -> int:
    """A 63-bit seed for one sampled row, a pure function of its coordinates (numpy's SeedSequence
    hashes them, so nearby coordinates give unrelated streams)."""
    ss = np.random.SeedSequence([int(seed), int(stream), int(counter), int(prompt), int(sample)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class Parallel:
    """This process's place in a data-parallel run, and the few collective operations the backend needs.

    ``Parallel()`` is one process (rank 0 of 1, :data:`SINGLE`): every method is then the identity
    and makes no collective call. ``Parallel(accelerator)`` wraps an ``accelerate.Accelerator``
    built in a launched process (see :func:`setup`). Every collective method (``sum``, ``mean``,
    ``barrier``, the first ``training``) must be called by ALL ranks in the same order.
    """

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self._prepared: dict[int, torch.nn.Module] = {}

    # -- where this process is ---------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return 1 if self.accelerator is None else int(self.accelerator.num_processes)

    @property
    def rank(self) -> int:
        return 0 if self.accelerator is None else int(self.accelerator.process_index)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, results and the final model."""
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The device accelerate assigned to this rank (None for one process: keep the model's)."""
        return None if self.accelerator is None else self.accelerator.device

    # -- data --------------------------------------------------------------------------------------
    def check_divides(self, n: int, name: str) -> int:
        """``n`` (a global batch, e.g. prompts per step) unchanged if the world size divides it, else
        ValueError naming ``name``: every rank must hold the same number of prompts (DDP runs the same
        passes on every rank, and the shards must make up the global batch exactly)."""
        n = V.integer(n, name, low=1)
        if n % self.world_size:
            V.fail(name, n, f"with {self.world_size} processes every step's prompts must split evenly: use a "
                   f"multiple of {self.world_size} (or launch a number of processes that divides {n})")
        return n

    def shard(self, items: Sequence) -> list:
        """This rank's contiguous share of a global batch (rank r of W gets items[r·n/W:(r+1)·n/W])."""
        items = list(items)
        self.check_divides(len(items), "prompts per step")
        n = len(items) // self.world_size
        return items[self.rank * n:(self.rank + 1) * n]

    @staticmethod
    def row_generators(seed: int, stream: str, counter: int, rows: Sequence[tuple[int, int]],
                       device="cpu") -> list[torch.Generator]:
        """One seeded ``torch.Generator`` per sampled row, ``rows`` = (global prompt index, sample
        index) pairs; ``counter`` numbers the backend's sampler calls (the same on every rank), and
        ``stream`` names what is sampled (:data:`STREAMS`). Pass the list as the sampler's generator."""
        sid = STREAMS[stream]
        out = []
        for prompt, k in rows:
            g = torch.Generator(device=device)
            g.manual_seed(row_seed(seed, sid, counter, prompt, k))
            out.append(g)
        return out

    # -- reductions ----------------------------------------------------------------------------------
    def sum(self, values: dict) -> dict:
        """Per-key sums over ranks (float64; one all-reduce for the whole dict)."""
        if self.accelerator is None or not values:
            return {k: float(v) for k, v in values.items()}
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return dict(zip(keys, t.cpu().tolist()))

    def mean(self, values: dict, weight: float) -> dict:
        """Per-key weighted means over ranks: Σ_r weight_r·value_r / Σ_r weight_r (e.g. a metric
        averaged over each rank's prompts, ``weight`` = that rank's number of prompts)."""
        w = float(weight)
        tot = self.sum({**{k: w * float(v) for k, v in values.items()}, "\0weight": w})
        den = tot.pop("\0weight")
        return {k: v / den if den else float("nan") for k, v in tot.items()}

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def close(self) -> None:
        """End of a run on every rank: wait until every rank (rank 0 writing the final files) is
        done, then leave the process group — a rank that exits with the group alive can abort in
        gloo's threads at interpreter shutdown. Identity for one process."""
        if self.accelerator is not None and torch.distributed.is_initialized():
            self.barrier()
            torch.distributed.destroy_process_group()

    def _comm_device(self):
        # gloo reduces CPU tensors, nccl CUDA tensors: the accelerator's device is the right one
        return self.accelerator.device

    # -- training ------------------------------------------------------------------------------------
    def prepared(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module accelerate prepared for training (DDP/FSDP wrapper), made once per module.
        Its construction is a collective call (rank 0's weights are broadcast)."""
        key = id(module)
        if key not in self._prepared:
            self._prepared[key] = self.accelerator.prepare_model(module)
        return self._prepared[key]

    @contextlib.contextmanager
    def training(self, live):
        """For the block, ``live.model`` calls go through the prepared module (a :class:`Through`), so
        the realiser's forward passes are DDP's and ``accelerator.backward`` all-reduces the gradients;
        every attribute (config, parameters, peft methods) is still the plain module's. Afterwards the
        plain module is back (snapshots, sampling and log-probs never see the wrapper). Identity for
        one process."""
        if self.accelerator is None:
            yield live
            return
        inner = live.model
        live.model = Through(self.prepared(inner), inner)
        try:
            yield live
        finally:
            live.model = inner

    def unwrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return module if self.accelerator is None else self.accelerator.unwrap_model(module)

    def __repr__(self):
        kind = "single process" if self.accelerator is None else str(self.accelerator.distributed_type)
        return f"Parallel(rank {self.rank} of {self.world_size}, {kind})"


class Through:
    """The plain module's attributes, the prepared (DDP/FSDP) module's forward and ``no_sync``.

    ``Policy`` code reads ``model.config`` and friends, which a DDP wrapper hides; calls must go
    through the wrapper for its gradient hooks to fire. :func:`plain` gives the plain module back.
    """

    def __init__(self, prepared: torch.nn.Module, inner: torch.nn.Module):
        self.prepared = prepared
        self.module = inner

    def __call__(self, *args, **kwargs):
        return self.prepared(*args, **kwargs)

    def no_sync(self):
        fn = getattr(self.prepared, "no_sync", None)
        return fn() if fn is not None else contextlib.nullcontext()

    def get_base_model(self):
        """The transformers model inside (looked through by ``llm.models.forward_names``)."""
        m = self.module
        return m.get_base_model() if hasattr(m, "get_base_model") else m

    def __getattr__(self, name):  # only for names not found on the proxy itself
        return getattr(self.module, name)


def plain(module):
    """The plain module under a :class:`Through` or a DDP wrapper (anything else unchanged)."""
    if isinstance(module, Through):
        return module.module
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        return module.module
    return module


#: one process: the identity (no accelerator, no collective calls)
SINGLE = Parallel()


def setup(*, cpu: bool | None = None, timeout_s: float | None = None) -> Parallel:
    """The :class:`Parallel` of this process: :data:`SINGLE` unless a launcher started several.

    In a launched process (``accelerate launch`` or ``torchrun``: WORLD_SIZE > 1) this builds an
    ``accelerate.Accelerator`` — on the CPU with gloo when ``cpu`` is True or no CUDA device exists
    (the only way to get N CPU processes from ``accelerate launch`` is ``--multi_gpu`` plus
    ``cpu=True``), else one GPU per rank (DDP, or FSDP/DeepSpeed as the launch config says).
    ``timeout_s`` (default: $NASHLAB_DIST_TIMEOUT, else 300 s) bounds the rendezvous and every
    collective: a rank that cannot reach the others fails naming the address, instead of waiting
    30 minutes (torch's default).

    Errors (ValueError, naming the variable): a malformed launcher environment (RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT), or a rendezvous that no rank 0 answers within ``timeout_s``.
    RuntimeError: accelerate started another number of processes than WORLD_SIZE. Nothing is
    written in any case.
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get("NASHLAB_DIST_TIMEOUT", "300"))
    timeout_s = V.number(timeout_s, "timeout_s", low=0, low_open=True)
    if not launched():
        return SINGLE
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    world = int(env["WORLD_SIZE"])  # launched() parsed it
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if not env[key]:
            V.fail(key, env[key], "it must be set: start data-parallel runs with `accelerate launch` or `torchrun`, "
                   "which set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for every process")
    try:
        rank, port = int(env["RANK"]), int(env["MASTER_PORT"])
    except ValueError:
        V.fail("RANK, MASTER_PORT", (env["RANK"], env["MASTER_PORT"]), "they must be integers (set by the launcher)")
    if not 0 <= rank < world:
        V.fail("RANK", rank, f"it must lie in 0..{world - 1} (WORLD_SIZE = {world})")
    if not 0 < port < 65536:
        V.fail("MASTER_PORT", port, "it must be a TCP port in 1..65535")
    if cpu is None:
        cpu = not torch.cuda.is_available()
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    where = f"{env['MASTER_ADDR']}:{port}"
    kwargs = InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=timeout_s))
    try:
        acc = Accelerator(cpu=bool(cpu), kwargs_handlers=[kwargs])
    except (RuntimeError, TimeoutError, OSError) as err:  # DistNetworkError/DistStoreError are RuntimeErrors
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        V.fail("MASTER_ADDR:MASTER_PORT", where, f"no data-parallel rendezvous answered there within {timeout_s:g} s "
               f"(rank {rank} of {world}; {why}); start every rank with the same address and port, rank 0 "
               "included (accelerate launch / torchrun do)")
    if acc.num_processes != world:
        raise RuntimeError(f"WORLD_SIZE = {world} but accelerate started {acc.num_processes} process(es): on a "
                           "machine without GPUs launch with `accelerate launch --multi_gpu --num_processes N` "
                           "(`--cpu` silently runs one process) or with torchrun")
    return Parallel(acc)
