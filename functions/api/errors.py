"""One place maps domain errors to HTTP answers, all in the documented shape:

{"error": {"code": "invalid_request", "message": "...", "details": [...]}}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
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


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message, "details": details or []}},
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

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug of ours: log it with its trace, tell the caller nothing internal.
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; the request id is in the logs")
