"""Prompt cancel: a render stops at the next torch module it calls once cancelled, not at the end of a step.

diffusers' step callback runs between denoising steps, so one long step (a large working size,
a slow device) held a cancelled render (SIGTERM, a server cancel) for minutes. While
``interruptible(cancel)`` is active on a thread, every torch module that thread calls first
checks ``cancel`` and raises ``Cancelled``: the frame in progress is thrown away (outputs are
written whole or not at all, see ``atomicio``) and finished frames stay. Other threads' modules
are not affected. A torch.compile'd run is left alone (a global hook would break its graphs)
and stops between steps as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch

from .stage import Cancelled

_cancels: dict[int, threading.Event] = {}  # thread id -> the cancel event of the render running on it
_lock = threading.Lock()
_hook: Any = None  # torch's handle of the global forward pre-hook, while any render is interruptible


def _check(_module: torch.nn.Module, _args: Any) -> None:
    cancel = _cancels.get(threading.get_ident())
    if cancel is not None and cancel.is_set():
        raise Cancelled()


@contextlib.contextmanager
def interruptible(cancel: threading.Event, enabled: bool = True) -> Iterator[None]:
    """Within the block, modules called on this thread raise ``Cancelled`` once ``cancel`` is set."""
    global _hook
    if not enabled:
        yield
        return
    thread = threading.get_ident()
    with _lock:
        if _hook is None:
            _hook = torch.nn.modules.module.register_module_forward_pre_hook(_check)
        _cancels[thread] = cancel
    try:
        yield
    finally:
        with _lock:
            del _cancels[thread]
            if not _cancels:
                _hook.remove()
                _hook = None
