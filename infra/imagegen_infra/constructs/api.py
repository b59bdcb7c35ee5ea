"""The public REST API: the blueprint's routes proxied to the API function, and API Gateway's own error
answers rewritten to our error shape.

Authentication and validation happen in the function, the same way locally and in the cloud:
it checks `X-API-Key` against the hashed key store (imagegen.keys.KeyStore) and parses the
body with pydantic, so every error, ours or API Gateway's, reads
{"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

import json

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.constructs.acknowledge import MANAGED_POLICY, acknowledge

F = apigw.AccessLogField
# One JSON object per request. Values API Gateway could put quotes into (error messages) stay out.
ACCESS_LOG_FORMAT = {
    "requestId": F.context_request_id(),
    "requestTime": F.context_request_time(),
    "ip": F.context_identity_source_ip(),
    "userAgent": F.context_identity_user_agent(),
    "method": F.context_http_method(),
    "resource": F.context_resource_path(),
    "path": F.context_path(),
    "status": F.context_status(),
    "errorType": F.context_error_response_type(),
    "responseLength": F.context_response_length(),
    "latencyMs": F.context_response_latency(),
    "integrationStatus": F.context_integration_status(),
    "integrationLatencyMs": F.context_integration_latency(),
    "xrayTraceId": F.context_xray_trace_id(),
}


def _error_body(code: str, message: str | None) -> str:
    """A gateway response template; no message means API Gateway's own (already JSON-quoted)."""
    quoted = json.dumps(message) if message else "$context.error.messageString"
    return '{"error": {"code": "%s", "message": %s, "details": []}}' % (code, quoted)  # noqa: UP031


# API Gateway answers these itself, before (or instead of) our function.
GATEWAY_RESPONSES: dict[apigw.ResponseType, tuple[str | None, str, str | None]] = {
    # type: (status, code, message)
    apigw.ResponseType.UNAUTHORIZED: ("401", "unauthorized", "API key is required: send it as X-API-Key"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "forbidden", "access denied"),
    # What REST APIs answer for a path or method with no route.
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("404", "not_found", "no such route"),
    apigw.ResponseType.THROTTLED: ("429", "rate_limited", "too many requests: retry after a short wait"),
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", "invalid_request", "the request body is invalid"),
    apigw.ResponseType.REQUEST_TOO_LARGE: ("413", "payload_too_large", "request body over 10 MB"),
    # Anything else keeps API Gateway's status and message, in our shape.
    apigw.ResponseType.DEFAULT_4_XX: (None, "invalid_request", None),
    apigw.ResponseType.DEFAULT_5_XX: (None, "internal_error", None),
}
NO_GATEWAY_AUTHORIZER = (
    "The API function authenticates X-API-Key itself against the hashed key store "
    "(imagegen.keys.KeyStore), identically locally and in the cloud, so the method has no API "
    "Gateway authorizer. Per-key throttling with a Lambda authorizer and usage plans is a later issue."
)


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: bp.Blueprint,
        handler: lambda_.IFunction,
        config: DeployConfig,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=names.api_access_log_group,
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=names.api_name,
            description=f"{names.prefix}: submit image generations, read jobs",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution logs (errors only) need the account's API Gateway logging role; CDK keeps
            # it when the stack is deleted, as other APIs of the account may rely on it.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=bp.API_STAGE,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # it would log full requests, X-API-Key included
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
            ),
        )
        self.stage = self.rest_api.deployment_stage
        # The stack's outputs are exactly blueprint.CLOUD_OUTPUT_KEYS (ApiUrl is the stage URL).
        self.rest_api.node.try_remove_child("Endpoint")
        self.url = (
            f"https://{self.rest_api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}/{bp.API_STAGE}"
        )

        # Explicit routes, no catch-all: anything else is API Gateway's 404 below. The body is
        # validated in the function with pydantic, so validation errors come in our shape too.
        integration = apigw.LambdaIntegration(handler, proxy=True)
        by_path: dict[str, list[str]] = {}
        for method, path in bp.API_ROUTES:
            by_path.setdefault(path, []).append(method)
        resources = {path: self._resource(path) for path in by_path}
        methods = [resources[path].add_method(method, integration) for method, path in bp.API_ROUTES]
        cors_allow_origins = config.runtime.cors_allow_origins
        if cors_allow_origins:  # one preflight per resource, allowing each of its methods
            methods += [
                resources[path].add_cors_preflight(
                    allow_origins=cors_allow_origins,
                    allow_methods=allowed,
                    allow_headers=["Content-Type", "X-API-Key", "Idempotency-Key"],
                )
                for path, allowed in by_path.items()
            ]
        for deployed in methods:
            acknowledge(deployed, "APIG4", NO_GATEWAY_AUTHORIZER)
            acknowledge(deployed, "COG4", NO_GATEWAY_AUTHORIZER)

        self._rewrite_gateway_responses(cors_allow_origins)
        self._acknowledge_findings()

    def _resource(self, path: str) -> apigw.IResource:
        """The resource of `path`, made with its parents as needed."""
        resource = self.rest_api.root
        for part in path.strip("/").split("/"):
            resource = resource.get_resource(part) or resource.add_resource(part)
        return resource

    def _rewrite_gateway_responses(self, cors_allow_origins: list[str]) -> None:
        headers = {"Content-Type": "'application/json'"}
        # A browser can read an error only with the CORS header; a gateway response cannot pick
        # one of several origins, so it carries the header only when there is one answer.
        if len(cors_allow_origins) == 1:
            headers["Access-Control-Allow-Origin"] = f"'{cors_allow_origins[0]}'"
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.rest_api.add_gateway_response(
                response_type.response_type,
                type=response_type,
                status_code=status,
                response_headers=headers,
                templates={"application/json": _error_body(code, message)},
            )

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.rest_api,
            "APIG2",
            "The body is validated in the API function with pydantic (imagegen.models), so validation "
            "errors are answered in our documented error shape with field details, identically by the "
            "local stack; an API Gateway model would duplicate the schema and answer in its own shape.",
        )
        acknowledge(
            self.stage,
            "APIG3",
            "No WAF web ACL by default: every request needs an API key checked by the function and the "
            "stage is throttled; a web ACL costs a fixed monthly fee a small self-hosted deployment may "
            "not want. Attach one to the stage when the API is exposed more widely.",
        )
        acknowledge(
            self.rest_api.node.find_child("CloudWatchRole"),
            "IAM4",
            "The account-level role API Gateway writes execution logs with, created by CDK with "
            "AmazonAPIGatewayPushToCloudWatchLogs, the managed policy AWS documents for it.",
            applies_to=[f"Policy::{MANAGED_POLICY}/service-role/AmazonAPIGatewayPushToCloudWatchLogs"],
        )
