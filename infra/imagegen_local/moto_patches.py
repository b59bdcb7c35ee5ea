"""Every change the local stack makes to moto, in one place. Each patch says what it works around
and the upstream issue; each has a canary in tests/local/test_moto_patches.py that reproduces
the behaviour on an unpatched moto and fails once moto changes it, so an upgrade tells us which
patch to revisit or delete.

`install(runtime)` applies them all; `uninstall()` gives moto back its own Lambda invoke.

Removed with moto 5.2.5: StartExecution deep-copied the state machine with every earlier
execution (whose live worker holds locks that cannot be copied). Fixed upstream by
getmoto/moto#10093 (issue #10077); the workflow tests start many executions of one machine.

No patch needed: moto stores any `Runtime` string, python3.14 (blueprint.LAMBDA_RUNTIME)
included; tests/local/test_moto_patches.py checks the functions are registered with it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from imagegen_local.lambda_runtime import InProcessLambdaRuntime


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    upstream: str
    canary: str  # the test that fails once moto no longer needs the patch


LAMBDA_IN_PROCESS = Patch(
    name="Lambda code runs in-process",
    why=(
        "moto runs a function's code only in a Docker container (LambdaFunction._invoke_lambda "
        "starts one); with use_docker off it answers a canned payload without running the code. "
        "There is no Docker here: the hook hands every invocation to our runtime instead."
    ),
    upstream="getmoto/moto#5721 (invoking needs Docker), getmoto/moto#9916 (in-process mode, open)",
    canary="test_moto_still_needs_docker_to_run_a_function",
)

S3_NOTIFY_WHEN_COMPLETE = Patch(
    name="S3 notifies once the object is complete",
    why=(
        "S3Response.put_object calls the backend's put_object, which sends ObjectCreated, and "
        "only then sets the object's metadata, ACL and tags: a notified function's HeadObject saw "
        "no x-amz-meta-prompt. Real S3 notifies once the object is complete. The notifications "
        "of a write request are held until it returns, then sent (still synchronously, so a "
        "PutObject returns after the s3-edit function ran)."
    ),
    upstream="none found; moto/s3/responses.py S3Response.put_object (moto 5.2.5)",
    canary="test_moto_still_notifies_before_the_metadata_is_set",
)

DYNAMODB_WRITES_SERIALIZED = Patch(
    name="DynamoDB writes are serialized with transactions",
    why=(
        "TransactWriteItems snapshots each table it touches (a deep copy) and, when the "
        "transaction is canceled, puts the snapshot back: every write another request made to "
        "that table meanwhile is lost. Real DynamoDB cancels only the transaction. Credits "
        "(imagegen.accounts) cancel transactions on purpose (402, a replayed Idempotency-Key) "
        "while workflows write jobs: writes and transactions take one lock."
    ),
    upstream="none found; moto/dynamodb/models/__init__.py transact_write_items (moto 5.2.5)",
    canary="test_moto_still_rolls_back_writes_made_during_a_canceled_transaction",
)

PATCHES = (LAMBDA_IN_PROCESS, S3_NOTIFY_WHEN_COMPLETE, DYNAMODB_WRITES_SERIALIZED)
# The DynamoDB backend's writes: one at a time, never inside another's transaction.
DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")

# S3 requests that create objects: PutObject, CopyObject, browser POST uploads,
# CompleteMultipartUpload.
S3_WRITES = ("put_object", "copy_object", "_bucket_response_post", "_key_response_post")

_lock = threading.Lock()
_original_invoke: Any = None


def install(runtime: InProcessLambdaRuntime) -> None:
    """Apply every patch; the Lambda hook runs invocations in `runtime` (the latest installed)."""
    with _lock:
        _run_lambda_in(runtime)
        _notify_once_s3_writes_complete()
        _serialize_dynamodb_writes()


def uninstall() -> None:
    """moto runs function code its own way again (the S3 patch stays: it only fixes timing)."""
    global _original_invoke
    from moto.awslambda.models import LambdaFunction

    with _lock:
        if _original_invoke is not None:
            LambdaFunction._invoke_lambda = _original_invoke  # type: ignore[method-assign]
            _original_invoke = None


def _run_lambda_in(runtime: InProcessLambdaRuntime) -> None:
    global _original_invoke
    from moto.awslambda.models import LambdaFunction

    if _original_invoke is None:
        _original_invoke = LambdaFunction._invoke_lambda

    def _invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        return runtime.invoke(function, event)

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign,assignment]


def _notify_once_s3_writes_complete() -> None:
    from moto.s3 import notifications
    from moto.s3.responses import S3Response

    if getattr(notifications, "_imagegen_deferred", False):
        return
    send_event = notifications.send_event
    state = threading.local()

    def held_send_event(*args: Any, **kwargs: Any) -> None:
        pending = getattr(state, "pending", None)
        if pending is None:
            send_event(*args, **kwargs)
        else:
            pending.append((args, kwargs))

    def holding(method: Any) -> Any:
        def write_then_notify(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(state, "pending", None) is not None:  # nested: the outer call sends
                return method(self, *args, **kwargs)
            state.pending = []
            try:
                result = method(self, *args, **kwargs)
            finally:
                pending, state.pending = state.pending, None
            for event_args, event_kwargs in pending:
                send_event(*event_args, **event_kwargs)
            return result

        return write_then_notify

    notifications.send_event = held_send_event
    for name in S3_WRITES:
        setattr(S3Response, name, holding(getattr(S3Response, name)))
    notifications._imagegen_deferred = True  # type: ignore[attr-defined]


def _serialize_dynamodb_writes() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_imagegen_serialized", False):
        return
    writes = threading.RLock()  # reentrant: a transaction's own writes call these methods

    def serialized(method: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with writes:
                return method(self, *args, **kwargs)

        return write

    for name in DYNAMODB_WRITES:
        setattr(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name)))
    DynamoDBBackend._imagegen_serialized = True  # type: ignore[attr-defined]
