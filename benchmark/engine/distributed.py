"""The processes of one data-parallel launch (``accelerate launch ... run_bench.py``), and the few collectives the
grid, the recipe and the harness need. A plain ``python run_bench.py`` is one process; every function here is then
local and free.

N ranks run the same command over the same grid, in the same order. For each cell the main process decides (reuse
it, take its lock, or leave it to another run) and the others follow that decision into the same cell; only the
main process writes (result store, checkpoints, logs, caches). Shared caches are built by the main process first;
the others then find them complete. Without a GPU the ranks are CPU processes on gloo (the tests use two).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object

T = TypeVar("T")
R = TypeVar("R")


def state() -> PartialState:
    """accelerate's process state (initialised once per process; it joins the launch's process group)."""
    return PartialState(cpu=not torch.cuda.is_available())


def processes() -> int:
    return state().num_processes


def rank() -> int:
    return state().process_index


def is_main() -> bool:
    return state().is_main_process


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` run on the main process only, its result returned on every process."""
    if processes() == 1:
        return compute()
    box = [compute() if is_main() else None]
    broadcast_object_list(box, from_process=0)
    return box[0]  # type: ignore[return-value]


@contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (building whatever cache it needs); the others run it once it is
    done, and find those caches complete."""
    with state().main_process_first():
        yield


def sharded_map(items: Sequence[T], compute: Callable[[list[T]], list[R]]) -> list[R]:
    """``compute`` over every item, the items dealt round-robin to the processes; every process gets all results,
    in the order of ``items``."""
    count, index = processes(), rank()
    if count == 1:
        return compute(list(items))
    mine = compute(list(items[index::count]))
    shards: list[list[R]] = gather_object([mine])  # one list per process, in rank order
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    for shard_rank, shard in enumerate(shards):
        results[shard_rank::count] = shard
    return results


def sum_over_processes(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over the processes (fp64, so a sum of per-rank sums stays exact enough)."""
    if processes() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=state().device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the parameters' gradients over the processes in place, as DDP does for the model it wraps (for
    parameters outside it: a method's own projectors). A parameter without a gradient counts as zero."""
    count = processes()
    if count == 1:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        torch.distributed.all_reduce(parameter.grad)
        parameter.grad /= count
