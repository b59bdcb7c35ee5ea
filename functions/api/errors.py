"""One place maps domain errors to HTTP answers, all in the documented shape:

{"error": {"code": "invalid_request", "message": "...", "details": [...]}}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError
from pydantic import ValidationError

from imagegen.errors import (
    Forbidden,
    IdempotencyKeyReused,
    ImagegenError,
    InsufficientCredits,
    InvalidRequest,
    JobNotCancelable,
    JobNotFound,
    ServiceUnavailable,
    Unauthorized,
    validation_details,
)

logger = Logger()

STATUS_BY_ERROR: dict[type[ImagegenError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    InsufficientCredits: 402,
    JobNotFound: 404,
    JobNotCancelable: 409,
    IdempotencyKeyReused: 422,
    ServiceUnavailable: 503,
}
RETRY_AFTER_SECONDS = 1  # on every 503: when a client may try again
# AWS error codes that say "not now" (throttled, or the service failing), not "not this request".
AWS_UNAVAILABLE_CODES = frozenset(
    {
        "InternalServerError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ThrottlingException",
    }
)


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message, "details": details or []}},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None,
    )


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(ImagegenError)
    def _domain_error(exc: ImagegenError) -> Response:
        # The most specific class decides: InsufficientCredits is an InvalidRequest, answered 402.
        status = next((STATUS_BY_ERROR[cls] for cls in type(exc).__mro__ if cls in STATUS_BY_ERROR), 500)
        return error_response(status, exc.code, exc.message, exc.details)

    @app.exception_handler(ValidationError)
    def _invalid_body(exc: ValidationError) -> Response:
        return error_response(400, "invalid_request", "the request body is invalid", validation_details(exc))

    @app.not_found
    def _no_route(_: Exception) -> Response:
        return error_response(404, "not_found", "no such route")

    @app.exception_handler([HTTPClientError, AwsConnectionError])
    def _aws_unreachable(exc: Exception) -> Response:
        # DynamoDB or Step Functions did not answer in time (botocore gave up after its
        # retries: a read or connect timeout, a dropped connection): our dependency, not a bug.
        # (Other BotoCoreErrors, a parameter botocore refuses, are bugs: 500.)
        logger.warning("an AWS call failed", error=type(exc).__name__, detail=str(exc))
        return error_response(503, "service_unavailable", "the service is busy; retry after a moment")

    @app.exception_handler(ClientError)
    def _aws_refused(exc: ClientError) -> Response:
        if exc.response.get("Error", {}).get("Code") in AWS_UNAVAILABLE_CODES:
            logger.warning("an AWS call was throttled or failed", error=exc.response["Error"]["Code"])
            return error_response(503, "service_unavailable", "the service is busy; retry after a moment")
        return _unexpected(exc)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug of ours: log it with its trace, tell the caller nothing internal.
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the request id is in the logs")
