"""The queue in front of lossd.losses.batching: concurrent small requests that can share a launch do.

A request that can be batched waits at most ``max_delay_s`` for companions with the same key; the
batch runs as soon as it holds ``max_batch`` requests or the delay is up. One future per request;
when a batch fails, every request in it fails with the same error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import Executor

import torch

from lossd.losses import Prepared, Result
from lossd.losses.batching import evaluate_batch


class Batcher:
    """Groups requests by key and runs each group with :func:`evaluate_batch` on the executor."""

    def __init__(self, executor: Executor, max_batch: int, max_delay_s: float,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self._executor = executor
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._on_batch = on_batch
        self._waiting: dict[Hashable, list[tuple[Prepared, asyncio.Future[Result]]]] = {}

    async def submit(self, key: Hashable, prepared: Prepared, device: torch.device) -> Result:
        """This request's result, computed with whatever same-key requests arrive meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        group = self._waiting.setdefault(key, [])
        group.append((prepared, future))
        if len(group) >= self._max_batch:
            self._launch(key, device)
        elif len(group) == 1:
            loop.call_later(self._max_delay_s, self._launch, key, device)
        return await future

    def _launch(self, key: Hashable, device: torch.device) -> None:
        group = self._waiting.pop(key, None)
        if not group:
            return  # already launched because it filled up
        self._on_batch(len(group))
        task = asyncio.get_running_loop().run_in_executor(
            self._executor, evaluate_batch, [p for p, _ in group], device)
        task.add_done_callback(lambda done: _settle(done, [f for _, f in group]))


def _settle(done: asyncio.Future[list[Result]], futures: list[asyncio.Future[Result]]) -> None:
    error = done.exception()
    for i, future in enumerate(futures):
        if future.done():  # the caller went away (cancelled)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result()[i])
