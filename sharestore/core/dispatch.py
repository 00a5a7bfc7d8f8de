"""Which handler runs an operation of each kind.

Each app registers its kinds in its `AppConfig.ready()`; the one task entry
(`sharestore.core.tasks.operation_task`) looks the handler up by the operation's kind. Adding an
operation kind: a service that creates the operation, the handler that does the work, one `register`.
"""

from __future__ import annotations

from collections.abc import Callable

from sharestore import errors
from sharestore.core.models import Operation
from sharestore.core.services.operations import OperationHandler, Reporter

_HANDLERS: dict[str, OperationHandler] = {}


def register(kind: str, handler: OperationHandler) -> None:
    """Make `handler` run the operations of `kind`; a kind has one handler."""
    known = _HANDLERS.get(kind)
    if known is not None and known is not handler:
        raise RuntimeError(f"operation kind {kind!r} has a handler already")
    _HANDLERS[kind] = handler


def _unhandled_run(operation: Operation, reporter: Reporter) -> None:
    raise errors.InternalError(desc=f"no handler is registered for operation kind {operation.kind!r}")


def _nothing(*args) -> None:
    return None


# An operation of an unknown kind (an app removed, a typo) fails instead of being swept forever.
UNHANDLED = OperationHandler(run=_unhandled_run, succeed=_nothing, fail=_nothing)


def handler_for(kind: str) -> OperationHandler:
    """The handler registered for `kind`, or one that fails the operation."""
    return _HANDLERS.get(kind, UNHANDLED)


def registered_kinds() -> list[str]:
    return sorted(_HANDLERS)


# Retry of a failed operation is defined per kind by the app that owns it; the console's retry
# screen (a core admin) reaches it through these two callables, set by that app at ready time.
RetryCheck = Callable[[Operation], str]
RetryRun = Callable[..., Operation]
_retry: dict[str, Callable] = {}


def register_retry(*, check: RetryCheck, run: RetryRun) -> None:
    """Set the service that says whether a failed operation may be retried and retries it."""
    _retry.update(check=check, run=run)


def retry_check(operation: Operation) -> str:
    """ "" when the operation can be retried now, else why not."""
    check = _retry.get("check")
    return check(operation) if check else "no retry service is installed"


def retry(*, actor: str, operation: Operation) -> Operation:
    run = _retry.get("run")
    if run is None:
        raise errors.OperationNotRetryable(uuid=operation.uuid, reason="no retry service is installed")
    return run(actor=actor, operation=operation)
