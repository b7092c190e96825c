"""SSH threads reach the simulator's store only through its asyncio loop (the store is not thread-safe)."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class LoopBridge:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = 30.0) -> None:
        self.loop = loop
        self.timeout = timeout

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the loop and wait for its result (from any thread but the loop's)."""
        async def on_loop() -> T:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result(self.timeout)

    def soon(self, fn: Callable[..., Any], *args: Any, delay: float = 0.0) -> None:
        """Schedule `fn(*args)` on the loop without waiting for it."""
        if delay:
            self.loop.call_soon_threadsafe(lambda: self.loop.call_later(delay, fn, *args))
        else:
            self.loop.call_soon_threadsafe(fn, *args)
