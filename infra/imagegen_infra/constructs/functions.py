"""The function factory: the one place a Lambda function is configured.

Runtime, architecture, logging, tracing, log retention, code and dependencies are decided
here once; a function differs from another only by its blueprint entry (name, handler,
timeout, memory) and by what the stack grants its role.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import AssetHashType, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from imagegen_infra import blueprint as bp
from imagegen_infra import bundling
from imagegen_infra.constructs.acknowledge import acknowledge
from imagegen_infra.constructs.queues import dead_letter_queue

RUNTIME = lambda_.Runtime(bp.LAMBDA_RUNTIME, lambda_.RuntimeFamily.PYTHON)
# Graviton: cheaper per GB-s than x86.
ARCHITECTURE = {"arm64": lambda_.Architecture.ARM_64}[bp.LAMBDA_ARCHITECTURE]


class FunctionFactory(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: bp.Blueprint,
        environment: Mapping[str, str],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        self.environment = dict(environment)
        self.log_retention = log_retention
        self.functions: dict[str, lambda_.Function] = {}  # by function name
        self.code = lambda_.Code.from_asset(str(bundling.FUNCTIONS_DIR), exclude=bundling.CODE_EXCLUDES)
        built = bundling.dependency_layer(python_version=bp.LAMBDA_RUNTIME.removeprefix("python"))
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            description=f"{names.prefix} runtime dependencies (locks/layer.txt)",
            code=lambda_.Code.from_asset(
                str(built.path), asset_hash=built.inputs_hash, asset_hash_type=AssetHashType.CUSTOM
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )

    def create(self, construct_id: str, spec: bp.FunctionSpec) -> lambda_.Function:
        """A function with its own role (allowed only to write its own logs and traces until
        the stack grants more) and its own log group. Asynchronously invoked functions get a
        dead-letter queue for the events they could not handle (spec.dead_letter_queue)."""
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            log_group_name=self.names.function_log_group(spec),
            retention=self.log_retention,
            # Logs expire anyway; a retained named group would block the next deploy.
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{spec.name}: {spec.description}",
        )
        log_group.grant_write(role)  # instead of AWSLambdaBasicExecutionRole's logs on "*"
        function = lambda_.Function(
            self,
            construct_id,
            function_name=spec.name,
            description=spec.description,
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self.code,
            layers=[self.dependencies],
            timeout=Duration.seconds(spec.timeout_seconds),
            memory_size=spec.memory_mb,
            environment=self.environment,
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
            dead_letter_queue=(
                dead_letter_queue(self, f"{construct_id}DeadLetters", spec.dead_letter_queue_name)
                if spec.dead_letter_queue_name
                else None
            ),
        )
        acknowledge(
            role,
            "IAM5",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions: "
            "Resource '*' is the only form AWS accepts (added by CDK for active tracing).",
            applies_to=["Resource::*"],
            generated_children=True,  # the role's DefaultPolicy
        )
        self.functions[spec.name] = function
        return function
