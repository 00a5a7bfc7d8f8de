"""The id of the request (or of the operation's request, in a worker) the current code serves.

The request id middleware sets it; `operation_create` stores it on the operation and the runner
sets it again in the worker, so log lines on both sides carry the same id.
"""

from __future__ import annotations

import contextvars

_current: contextvars.ContextVar[str] = contextvars.ContextVar("sharestore_request_id", default="")


def get() -> str:
    return _current.get()


def set(value: str) -> contextvars.Token:  # mirrors ContextVar.set
    return _current.set(value or "")


def reset(token: contextvars.Token) -> None:
    _current.reset(token)
