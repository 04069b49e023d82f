"""torchrun sharding for evaluation: which samples a rank takes, and gathering the ranks' results on rank 0."""
from __future__ import annotations

import itertools
import os
from datetime import timedelta
from typing import Any, Iterable, Iterator

from edgeclick.data.sample import Sample


def dist_env() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shard(dataset: Iterable[Sample], n: int, rank: int, world: int) -> Iterator[tuple[int, Sample]]:
    """(index, sample) for indices rank, rank + world, … < n; random access when the dataset has it.

    With random access a ValueError from `dataset[i]` (edgeclick's BrokenSampleError: the file does not
    decode or its mask is empty) skips that sample; the dataset records why in its `skipped` list.
    """
    if hasattr(dataset, "__getitem__"):
        for i in range(rank, n, world):
            try:
                sample = dataset[i]  # type: ignore[index]
            except ValueError:
                continue
            if not isinstance(sample, Sample):
                raise TypeError(f"dataset[{i}] is {type(sample).__name__}, expected Sample")
            yield i, sample
    else:
        yield from itertools.islice(enumerate(dataset), rank, n, world)


def gather(payload: Any, rank: int, world: int) -> list[Any] | None:
    """torch.distributed gather_object to rank 0 over gloo; the list on rank 0, None elsewhere."""
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=24))
    # A process group the session opened for its own use may be NCCL; objects travel over gloo.
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timedelta(hours=24))
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(payload, gathered, dst=0, group=group)
    if created:
        dist.destroy_process_group()
    return gathered
