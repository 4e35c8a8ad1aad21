"""Distributed data parallel training under torchrun, and resumable run state; a no-op in a single process.

    torchrun --nproc_per_node 2 -m mim_perception.cli pretrain --data … --out runs/pre       # gloo on CPU
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-endpoint host:29500 -m mim_perception.cli finetune …   # NCCL

What changes with N processes: each rank reads a disjoint shard per epoch (DistributedSampler, reshuffled with
the epoch number), gradients are all-reduced by DistributedDataParallel, batch norms become SyncBatchNorm, and
the global batch stays ``train.batch_size`` (SyncBatchNorm on GPUs): each rank takes ``micro_batch`` frames and accumulates
``batch_size / (micro_batch × N)`` micro-steps before an optimiser step. Only rank 0 logs, evaluates and writes
files. ``OUT/last.pt`` (model, optimiser, EMA, step, epoch) is written every ``train.checkpoint_every`` steps;
a run started on an OUT that holds one resumes from it, so ``torchrun --max-restarts K`` survives a dead worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from mim_perception.core.errors import ConfigError, ModelLoadError
from mim_perception.training.checkpoint import load_into, load_state


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank) if self.enabled else torch.device("cuda")
        return torch.device("cpu")

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def setup() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK); NCCL on GPUs, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(d.local_rank)
        torch.distributed.init_process_group(backend)
    return d


def teardown(d: Dist) -> None:
    if d.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def micro_batching(batch_size: int, micro_batch: int, world: int) -> tuple[int, int]:
    """(frames per rank per micro-step, micro-steps per optimiser step) keeping the global batch ``batch_size``."""
    micro = micro_batch or max(1, batch_size // world)
    if batch_size % (micro * world):
        raise ConfigError(f"train.batch_size {batch_size} is not a multiple of micro_batch {micro} × {world} processes")
    return micro, batch_size // (micro * world)


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    if not d.enabled:
        return model
    # SyncBatchNorm is CUDA-only in torch; on CPU (gloo) batch statistics stay per rank and DDP broadcasts
    # rank 0's running statistics every forward, so the ranks' models stay identical either way.
    if torch.cuda.is_available() and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [d.local_rank] if torch.cuda.is_available() else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sampler(dataset: Dataset[Any], d: Dist, seed: int) -> DistributedSampler[Any] | None:
    if not d.enabled:
        return None
    return DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed, drop_last=True)


@contextlib.contextmanager
def no_sync(model: nn.Module, accumulating: bool) -> Iterator[None]:
    """Skip DDP's all-reduce on micro-steps that only accumulate (the last one of the step reduces everything)."""
    if accumulating and isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


def mean_across(value: float, d: Dist) -> float:
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t.item()) / d.world


def param_checksums(model: nn.Module, d: Dist) -> list[str]:
    """sha256 prefix of every rank's parameters (gathered): equal on all ranks when DDP works. Buffers are left
    out: BN running statistics follow each rank's last batch until DDP broadcasts rank 0's at the next forward."""
    h = hashlib.sha256()
    for p in unwrap(model).parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    mine = h.hexdigest()[:16]
    if not d.enabled:
        return [mine]
    gathered: list[Any] = [None] * d.world
    torch.distributed.all_gather_object(gathered, mine)
    return [str(g) for g in gathered]


def groups(batches: Any, accum: int) -> Iterator[list[Any]]:
    """Micro-batches grouped per optimiser step (an incomplete group at the end of an epoch is dropped)."""
    buf: list[Any] = []
    for b in batches:
        buf.append(b)
        if len(buf) == accum:
            yield buf
            buf = []


def stop_requested(out: Path, d: Dist) -> bool:
    """``touch OUT/STOP`` ends a run gracefully; all ranks agree on it, else the others would hang in all-reduce."""
    return mean_across(float((out / "STOP").exists()), d) > 0


def resume(out: Path, model: nn.Module, opt: torch.optim.Optimizer, d: Dist, ema: nn.Module | None = None
           ) -> tuple[int, int, list[dict[str, Any]]]:
    """(step, epoch, history) from ``OUT/last.pt`` if present, model/optimiser/EMA restored; else (0, 0, [])."""

    path = out / "last.pt"
    if not path.exists():
        return 0, 0, []
    state = load_state_file(path)
    load_into(model, state["model"], source=str(path))
    opt.load_state_dict(state["optimizer"])
    if ema is not None and "ema" in state:
        load_into(ema, state["ema"], source=str(path))
    if d.main:
        print(f"resumed from {path} at step {state['step']}", flush=True)
    return int(state["step"]), int(state["epoch"]), list(state["history"])


def checkpoint(out: Path, model: nn.Module, opt: torch.optim.Optimizer, d: Dist, *, step: int, epoch: int,
               history: list[dict[str, Any]], every: int, ema: nn.Module | None = None) -> None:
    if every and step % every == 0 and d.main:
        extra = {"ema": ema.state_dict()} if ema is not None else {}
        save_state(out / "last.pt", model=unwrap(model).state_dict(), optimizer=opt.state_dict(), step=step,
                   epoch=epoch, history=history, **extra)


def save_state(path: Path, **state: Any) -> None:
    """Run state (tensors, numbers, nested dicts: loadable with weights_only=True), written atomically."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state_file(path: Path) -> dict[str, Any]:

    state: dict[str, Any] = dict(load_state(path))   # weights_only; a corrupt file stops the run, never restarts it
    if "step" not in state:
        raise ModelLoadError(f"resume state {path} is not a run state of this tool")
    return state
