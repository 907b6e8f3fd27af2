"""Prompt cancel: a render stops at the next torch module it calls once cancelled, not at the end of a step.

diffusers' step callback runs between denoising steps, so one long step (a large working size,
a slow device) held a cancelled render (SIGTERM, a server cancel) for minutes. While
``interruptible(cancel)`` is active on a thread, once ``cancel`` is set every torch module that
thread calls raises ``Cancelled``: the frame in progress is thrown away
(outputs are written whole or not at all, see ``io.atomic``) and finished frames stay. Other
threads' modules are not affected. The module hook is global, and any global hook takes every
module call off torch's fast path (8.8% of a 128 px render of the tiny model), so it is installed
by ``cancel.set()`` itself (wrapped for the block), costing nothing before: no hook and no
watcher thread (one that polled measured 42% slower on a CPU-starved machine). A torch.compile'd
run is left alone (a global hook would break its graphs) and stops between steps as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import Cancelled

_cancels: dict[int, threading.Event] = {}  # thread id -> the cancel event of the render running on it
_lock = threading.RLock()  # reentrant: a signal handler that sets a cancel may interrupt this thread holding it
_hook: Any = None  # torch's handle of the global forward pre-hook, while a running render is cancelled


def _check(_module: torch.nn.Module, _args: Any) -> None:
    cancel = _cancels.get(threading.get_ident())
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def _arm() -> None:
    """Install the hook (a cancel was set while a render is interruptible)."""
    global _hook
    with _lock:
        if _hook is None and _cancels:
            _hook = torch.nn.modules.module.register_module_forward_pre_hook(_check)


@contextlib.contextmanager
def interruptible(cancel: threading.Event, enabled: bool = True) -> Iterator[None]:
    """Within the block, modules called on this thread raise ``Cancelled`` once ``cancel`` is set."""
    global _hook
    if not enabled:
        yield
        return
    thread, event_set = threading.get_ident(), cancel.set

    def set_and_arm() -> None:
        event_set()
        _arm()

    with _lock:
        _cancels[thread] = cancel
        if "set" not in vars(cancel):  # not already wrapped by a block on another thread
            cancel.set = set_and_arm  # type: ignore[method-assign]  # the cancel event is armed in place, on purpose
    if cancel.is_set():
        _arm()
    try:
        yield
    finally:
        with _lock:
            del _cancels[thread]
            if not any(other is cancel for other in _cancels.values()):
                del cancel.set  # the Event's own method again
            if not _cancels and _hook is not None:
                _hook.remove()
                _hook = None
