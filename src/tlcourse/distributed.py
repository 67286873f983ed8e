"""Several processes, one training run: torchrun's environment, the process group, DDP, sharding.

``torchrun --nproc_per_node=N -m tlcourse train`` starts N copies of the same program; each reads
its rank from the environment (:func:`init_distributed`), trains on its shard of every batch, and
DistributedDataParallel averages the gradients. Without torchrun the same code runs with
``world_size`` 1 and ``is_main`` true: nothing is wrapped, sharded or gathered.

Evaluation is sharded too: each rank predicts its slice of the test set and the logits are
gathered (:func:`gather_shards`), so every rank holds the same numbers and takes the same
early-stopping decision, and the confusion matrix sees every image exactly once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .config import pick_device
from .errors import ConfigError

LR_SCALING = ("none", "linear", "sqrt")  # how the learning rate follows the global batch (scale_lr)


@dataclass(frozen=True)
class DistContext:
    """Who this process is: its rank among ``world_size`` processes, its GPU on this machine, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number; launch with torchrun, which sets it") from None


def init_distributed(device: str | None = None) -> DistContext:
    """Read RANK, WORLD_SIZE, LOCAL_RANK (set by torchrun) and join the process group: NCCL on GPUs, gloo on CPUs.

    Without those variables (or with WORLD_SIZE=1) nothing is initialised and the context is rank 0 of 1.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = device.startswith("cuda") if device else torch.cuda.is_available()
    if dist.is_initialized():  # already joined (a test's spawned process, or a second call)
        world_size, rank = dist.get_world_size(), dist.get_rank()
        use_cuda = dist.get_backend() == "nccl"
    elif world_size == 1:
        return DistContext(device=device or pick_device())
    if device and device.startswith("mps"):
        raise ConfigError("DistributedDataParallel does not run on mps; use --device cpu (gloo) or CUDA GPUs (NCCL)")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise ConfigError(
                f"WORLD_SIZE={world_size} is set but MASTER_ADDR/MASTER_PORT are not; "
                "launch with torchrun, which sets all four"
            )
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, f"cuda:{local_rank}" if use_cuda else "cpu")


def cleanup_distributed() -> None:
    """Leave the process group (after a barrier, so no rank exits while another still talks to it)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def get_world_size() -> int:
    """The number of processes in the run; 1 without torchrun."""
    return dist.get_world_size() if dist.is_initialized() else 1


def get_rank() -> int:
    """This process's rank; 0 without torchrun."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 and in a single process: the one that prints, saves and shows progress bars."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a file the others read)."""
    if get_world_size() > 1:
        dist.barrier()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (decoding, downloads, caches it writes); the others then find its files."""
    if not is_main_process():
        barrier()
    yield
    if is_main_process():
        barrier()


def wrap_model(model: nn.Module, sync_bn: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes run; ``model`` itself otherwise.

    ``sync_bn=True`` turns trainable BatchNorm layers into SyncBatchNorm (batch statistics over all
    GPUs); it runs on CUDA only. Frozen BatchNorm stays in eval mode either way and needs no syncing.
    """
    device = next(model.parameters()).device
    if sync_bn and device.type != "cuda":
        raise ConfigError(
            f"SyncBatchNorm runs on CUDA GPUs (NCCL) only and this model is on {device.type}; drop --sync-bn"
        )
    if get_world_size() == 1:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (evaluation and saving use it)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def scale_lr(lr: float, rule: str = "none", world_size: int | None = None) -> float:
    """The learning rate for a global batch ``world_size`` times larger: unchanged, times N, or times sqrt(N).

    ``linear`` is Goyal et al.'s rule for SGD (2017, with warm-up); ``sqrt`` is the milder one often used
    with Adam. ``none`` (the default) keeps the rate and lets each step see more images.
    """
    if rule not in LR_SCALING:
        raise ConfigError(f"--lr-scaling {rule!r}: use one of {', '.join(LR_SCALING)}")
    n = get_world_size() if world_size is None else world_size
    return lr * {"none": 1.0, "linear": float(n), "sqrt": math.sqrt(n)}[rule]


def shard_indices(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s positions of ``order``: every ``world_size``-th, starting at ``rank``.

    ``order`` is first padded by repeating its start (as DistributedSampler does) so every rank gets the same
    number of samples: DDP needs every rank to take the same number of steps. Batch ``b`` of all ranks
    together is then ``order[b*B*N:(b+1)*B*N]``, the batch one process with ``B*N`` per batch would take.
    """
    if world_size == 1:
        return order
    pad = -len(order) % world_size
    if pad:
        order = torch.cat([order, order.repeat(-(-pad // max(len(order), 1)))[:pad]])
    return order[rank::world_size]


def gather_shards(shard: torch.Tensor, total: int) -> torch.Tensor:
    """Undo :func:`shard_indices`: every rank's rows, interleaved back into order, padding dropped."""
    world_size = get_world_size()
    if world_size == 1:
        return shard[:total]
    where = shard.device
    shard = shard.to(_comm_device()).contiguous()
    parts = [torch.empty_like(shard) for _ in range(world_size)]
    dist.all_gather(parts, shard)
    return torch.stack(parts, 1).flatten(0, 1)[:total].to(where)


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_across(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over all ranks (e.g. correct predictions and samples seen in a training epoch)."""
    if get_world_size() == 1:
        return t
    where = t.device
    out = t.detach().to(_comm_device()).clone()
    dist.all_reduce(out)
    return out.to(where)


def gather_from_shards(loader, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Outputs over this rank's shard of ``loader`` -> the whole set's, in the loader's order, on every rank."""
    if count_shards(loader) == 1:
        return tensors
    n = getattr(loader, "num_samples", None) or len(loader.dataset)
    return tuple(gather_shards(t, n) for t in tensors)


def count_shards(loader) -> int:
    """Over how many ranks ``loader`` is split: a TensorLoader's ``world_size``, a DistributedSampler's replicas."""
    sampler = getattr(loader, "sampler", None)
    return getattr(loader, "world_size", None) or getattr(sampler, "num_replicas", None) or 1
