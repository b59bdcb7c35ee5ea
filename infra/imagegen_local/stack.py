"""The local stack: the whole service on loopback, no Docker, no AWS account.

moto in server mode emulates every AWS service we use; our resources are created there from
the same blueprint the CDK stack reads; the state machine is the same definition, executed by
moto's interpreter; Lambda handlers run in-process through their real entry points; a local
API gateway serves HTTP; the upstream simulator stands in for the provider unless a real
base URL is configured.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import secrets
import socket
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from imagegen_infra import blueprint as bp
from imagegen_infra.workflow_definition import definition_json, render
from imagegen_local import moto_patches
from imagegen_local.gateway import LocalApiGateway
from imagegen_local.lambda_runtime import FunctionConfig, InProcessLambdaRuntime

log = logging.getLogger("imagegen.local")

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUTS_FILE = REPO_ROOT / "local-stack.json"
LOCAL_OWNER = "local-user"
DEFAULT_LOCAL_CREDITS = 10_000  # the local key's opening balance (IMAGEGEN_LOCAL_CREDITS)
REGION = bp.LOCAL_REGION
ACCOUNT = bp.LOCAL_ACCOUNT


class PortInUse(RuntimeError):
    """The API port is taken, most likely by another local stack."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStackConfig:
    port: int = 8787
    api_key: str | None = None
    provider: str = "apiframe"
    provider_base_url: str | None = None  # None: the embedded simulator
    provider_api_key: str | None = None
    sim_latency: str | None = None  # "min,max" seconds for the simulator
    sim_faults: str | None = None
    credits: int = DEFAULT_LOCAL_CREDITS
    # Extra IMAGEGEN_* settings (poll schedule, deadline...) for the functions' environment.
    settings_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalStackConfig:
        env = os.environ if environ is None else environ
        passthrough = (
            "IMAGEGEN_FIRST_POLL_SECONDS",
            "IMAGEGEN_POLL_INTERVAL_SECONDS",
            "IMAGEGEN_JOB_DEADLINE_SECONDS",
            "IMAGEGEN_RETRY_BASE_SECONDS",
            "IMAGEGEN_RETRY_MAX_SECONDS",
            "IMAGEGEN_MAX_CREATE_ATTEMPTS",
            "IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS",
            "IMAGEGEN_MAX_UPLOAD_BYTES",
            "IMAGEGEN_PROVIDER_FAILOVER",
            "IMAGEGEN_PROVIDER_BASE_URLS",
            "IMAGEGEN_RENDER_TIMEOUT_SECONDS",
            "IMAGEGEN_CORS_ALLOW_ORIGINS",
        )
        return cls(
            port=int(env.get("IMAGEGEN_LOCAL_PORT", "8787")),
            api_key=env.get("IMAGEGEN_API_KEY") or None,
            provider=env.get("IMAGEGEN_PROVIDER") or "apiframe",
            provider_base_url=env.get("IMAGEGEN_PROVIDER_BASE_URL") or None,
            provider_api_key=env.get("IMAGEGEN_PROVIDER_API_KEY") or None,
            sim_latency=env.get("IMAGEGEN_SIM_LATENCY") or None,
            sim_faults=env.get("IMAGEGEN_SIM_FAULTS") or None,
            credits=int(env.get("IMAGEGEN_LOCAL_CREDITS") or DEFAULT_LOCAL_CREDITS),
            settings_env={k: env[k] for k in passthrough if env.get(k)},
        )


def _create_private_bucket(s3: Any, purpose: str) -> str:
    """A bucket of the blueprint with every public access blocked, as the CDK stack has it."""
    bucket = bp.bucket_name(purpose, ACCOUNT, REGION)
    s3.create_bucket(Bucket=bucket)
    blocks = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=dict.fromkeys(blocks, True))
    return bucket


def _indexes(table: bp.TableSpec) -> dict[str, Any]:
    if not table.indexes:
        return {}
    return {
        "GlobalSecondaryIndexes": [
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": index.projection},
            }
            for index in table.indexes
        ]
    }


class LocalStack:
    def __init__(self, config: LocalStackConfig | None = None) -> None:
        self.config = config or LocalStackConfig()
        self.runtime = InProcessLambdaRuntime()
        self.outputs: dict[str, str] = {}
        self.function_arns: dict[str, str] = {}  # by function name
        self.simulator: Any = None
        self._moto: Any = None
        self._gateway: LocalApiGateway | None = None
        self.triggers: list[Any] = []  # imagegen_local.triggers: what moto does not drive

    # --- lifecycle ----------------------------------------------------------------------------
    def reserve_port(self) -> None:
        """Bind the API port first: a busy port fails before anything else starts (or is
        cleaned up), with PortInUse."""
        if self._gateway is not None:
            return
        try:
            self._gateway = LocalApiGateway(
                self._invoke_api, port=self.config.port, cors_allow_origins=self._cors_allow_origins()
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(
                f"port {self.config.port} is already in use (another `make local`?); "
                "stop it or pick another port with IMAGEGEN_LOCAL_PORT"
            ) from None

    def start(self) -> dict[str, str]:
        self.reserve_port()
        assert self._gateway is not None
        self._start_moto()
        self._start_simulator()
        self._create_resources()
        self._gateway.start()
        self.outputs["ApiUrl"] = self._gateway.url
        return self.outputs

    def stop(self) -> None:
        for trigger in self.triggers:
            trigger.stop()
        if self._gateway:
            self._gateway.stop()
        if self.simulator:
            self.simulator.stop()
        if self._moto:
            self._moto.stop()
        moto_patches.uninstall()

    def _invoke_api(self, event: dict[str, Any]) -> dict[str, Any]:
        """API Gateway's Lambda proxy integration: the API function, as moto has it configured,
        in the runtime's execution environments."""
        from moto.awslambda.models import lambda_backends

        function = lambda_backends[ACCOUNT][REGION].get_function(bp.API_FUNCTION.name)
        return dict(self.runtime.call(FunctionConfig.of(function), event))

    def _cors_allow_origins(self) -> list[str]:
        value = self.config.settings_env.get("IMAGEGEN_CORS_ALLOW_ORIGINS", "")
        return [origin.strip() for origin in value.split(",") if origin.strip()]

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_outputs(self, path: Path = OUTPUTS_FILE) -> Path:
        path.write_text(json.dumps(self.outputs, indent=2) + "\n")
        return path

    # --- parts --------------------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        port = free_port()
        # Everything in this process (our handlers, moto's Step Functions interpreter) talks to
        # this one server; MOTO_PORT is how the interpreter finds it for its Lambda calls.
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "MOTO_PORT": str(port),
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        moto_patches.install(self.runtime)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.outputs["AwsEndpointUrl"] = os.environ["AWS_ENDPOINT_URL"]

    def _start_simulator(self) -> None:
        if self.config.provider_base_url:
            return
        from imagegen_local.simulator import SimulatorConfig, UpstreamSimulator

        sim_env = {
            "IMAGEGEN_SIM_LATENCY": self.config.sim_latency or "",
            "IMAGEGEN_SIM_FAULTS": self.config.sim_faults or "",
        }
        sim_config = SimulatorConfig.from_env({k: v for k, v in sim_env.items() if v})
        self.config.provider_api_key = self.config.provider_api_key or "sim_" + secrets.token_hex(12)
        sim_config.api_key = self.config.provider_api_key
        self.simulator = UpstreamSimulator(sim_config, host="127.0.0.1", port=0)
        self.simulator.start()
        self.config.provider_base_url = self.simulator.base_url

    def _create_resources(self) -> None:
        from imagegen.accounts import Accounts
        from imagegen.keys import KeyStore
        from imagegen.runtime import dynamodb_resource
        from imagegen.settings import Settings

        session = boto3.session.Session(region_name=REGION)
        dynamodb, s3 = session.client("dynamodb"), session.client("s3")
        for table in (bp.JOBS_TABLE, bp.API_KEYS_TABLE):
            key_names = {table.partition_key} | {
                k for i in table.indexes for k in (i.partition_key, i.sort_key)
            }
            dynamodb.create_table(
                TableName=table.name,
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"} for name in sorted(key_names)
                ],
                KeySchema=[{"AttributeName": table.partition_key, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                **(
                    {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": table.stream_view}}
                    if table.stream_view
                    else {}
                ),
                SSESpecification={"Enabled": True},
                **_indexes(table),
            )
            if table.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
        results_bucket = _create_private_bucket(s3, "results")
        uploads_bucket = self._create_uploads_bucket(s3)
        topic_arn = session.client("sns").create_topic(Name=bp.EVENTS_TOPIC)["TopicArn"]
        queues = self._create_event_routes(session)
        secret = session.client("secretsmanager").create_secret(
            Name=bp.PROVIDER_SECRET, SecretString=self.config.provider_api_key or "unset"
        )
        settings = Settings(
            jobs_table=bp.JOBS_TABLE.name,
            api_keys_table=bp.API_KEYS_TABLE.name,
            results_bucket=results_bucket,
            events_topic_arn=topic_arn,
            state_machine_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{bp.STATE_MACHINE}",
            provider=self.config.provider,
            provider_base_url=self.config.provider_base_url or "",
            provider_secret_id=secret["ARN"],
            allow_loopback_urls=True,  # local mode only: the simulator and moto live on 127.0.0.1
            uploads_bucket=uploads_bucket,
            uploads_owner=LOCAL_OWNER,  # S3 edits are the local key's jobs: visible through its API
            intake_owner=LOCAL_OWNER,  # so are jobs requested by events
            event_bus_name=bp.EVENT_BUS,
            webhook_queue_url=queues["webhooks"],
        )
        function_env = {
            **settings.to_environ(),
            "IMAGEGEN_FIRST_POLL_SECONDS": "1",
            "IMAGEGEN_POLL_INTERVAL_SECONDS": "1",
            **self.config.settings_env,
            "POWERTOOLS_SERVICE_NAME": "imagegen",
            "POWERTOOLS_METRICS_NAMESPACE": "imagegen",
        }
        # Each function gets this environment as its configuration in moto, which the runtime
        # hands every invocation. Powertools reads its own settings from the process
        # environment, the same for every function.
        os.environ.update({k: v for k, v in function_env.items() if k.startswith("POWERTOOLS_")})
        settings = Settings.from_environ(function_env)
        arns = self._create_functions(session, function_env)
        self._start_triggers(session, queues)
        self._schedule_sweeps(session)
        self._wire_edits(session, uploads_bucket, topic_arn)
        sfn = session.client("stepfunctions")
        machine = sfn.create_state_machine(
            name=bp.STATE_MACHINE,
            definition=render(definition_json(settings.job_deadline_seconds), arns),
            roleArn=self._role_arn(session),
            type="STANDARD",
        )
        api_key = KeyStore(bp.API_KEYS_TABLE.name, dynamodb_resource()).create(
            LOCAL_OWNER, raw_key=self.config.api_key
        )
        if self.config.credits > 0:  # as `admin grant` does: the opening balance is in the ledger
            Accounts(bp.API_KEYS_TABLE.name, dynamodb_resource()).grant(
                LOCAL_OWNER, self.config.credits, grant_id="local-stack-opening"
            )
        self.outputs.update(
            {
                "ApiKey": api_key,
                "ResultsBucket": results_bucket,
                "UploadsBucket": uploads_bucket,
                "JobsTable": bp.JOBS_TABLE.name,
                "EventsTopicArn": topic_arn,
                "StateMachineArn": machine["stateMachineArn"],
                "EventBusName": bp.EVENT_BUS,
                "IntakeQueueUrl": queues["intake"],
                "IntakeDlqUrl": queues["intake-dlq"],
            }
        )

    def _role_arn(self, session: boto3.session.Session) -> str:
        iam = session.client("iam")
        try:
            return str(iam.get_role(RoleName="imagegen-local")["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                    }
                ],
            }
            return str(
                iam.create_role(RoleName="imagegen-local", AssumeRolePolicyDocument=json.dumps(trust))[
                    "Role"
                ]["Arn"]
            )

    def _create_functions(self, session: boto3.session.Session, env: dict[str, str]) -> dict[str, str]:
        """Register every function in moto with the blueprint's handler, timeout and memory;
        the code runs in-process (lambda_runtime), so the zip is only a placeholder."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README.txt", "code runs in-process from functions/")
        lambda_client = session.client("lambda")
        role = self._role_arn(session)
        arns: dict[str, str] = {}
        for function in bp.ALL_FUNCTIONS:
            created = lambda_client.create_function(
                FunctionName=function.name,
                Runtime=bp.LAMBDA_RUNTIME,
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": buffer.getvalue()},
                Timeout=function.timeout_seconds,
                MemorySize=function.memory_mb,
                Architectures=["arm64"],
                Environment={"Variables": env},
            )
            self.function_arns[function.name] = created["FunctionArn"]
            for key, spec in bp.WORKFLOW_FUNCTIONS.items():
                if spec == function:
                    arns[key] = created["FunctionArn"]
        return arns

    def _create_event_routes(self, session: boto3.session.Session) -> dict[str, str]:
        """Our bus, the rule that routes `Image Job Requested` events to the intake queue, and
        the intake and webhook queues, each with a dead-letter queue after MAX_RECEIVES."""
        sqs, events = session.client("sqs"), session.client("events")
        retention = {"MessageRetentionPeriod": str(bp.QUEUE_RETENTION_SECONDS)}
        # Where the cloud's stream mapping sets aside a batch it kept failing on; the local stream
        # trigger retries without end instead (imagegen_local.triggers), so nothing lands here.
        sqs.create_queue(QueueName=bp.DEFAULT.job_events_dlq, Attributes=retention)
        urls: dict[str, str] = {}
        arns: dict[str, str] = {}
        for name, queue, dlq in (
            ("intake", bp.INTAKE_QUEUE, bp.INTAKE_DLQ),
            ("webhooks", bp.WEBHOOK_QUEUE, bp.WEBHOOK_DLQ),
        ):
            dlq_url = sqs.create_queue(QueueName=dlq, Attributes=retention)["QueueUrl"]
            dlq_arn = arns[f"{name}-dlq"] = sqs.get_queue_attributes(
                QueueUrl=dlq_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(bp.MAX_RECEIVES)}
            urls[name] = sqs.create_queue(
                QueueName=queue,
                Attributes={
                    **retention,
                    "RedrivePolicy": json.dumps(redrive),
                    "VisibilityTimeout": str(bp.QUEUE_VISIBILITY_SECONDS),
                },
            )["QueueUrl"]
            urls[f"{name}-dlq"] = dlq_url
        events.create_event_bus(Name=bp.EVENT_BUS)
        events.put_rule(
            Name=bp.INTAKE_RULE, EventBusName=bp.EVENT_BUS, EventPattern=json.dumps(bp.INTAKE_EVENT_PATTERN)
        )
        intake_arn = sqs.get_queue_attributes(QueueUrl=urls["intake"], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_targets(
            Rule=bp.INTAKE_RULE,
            EventBusName=bp.EVENT_BUS,
            Targets=[{"Id": "intake", "Arn": intake_arn, "DeadLetterConfig": {"Arn": arns["intake-dlq"]}}],
        )
        return urls

    def _start_triggers(self, session: boto3.session.Session, queues: dict[str, str]) -> None:
        """The event source mappings moto does not drive (imagegen_local.triggers): the job
        table's stream to the job-events function, the intake and webhook queues to theirs."""
        from imagegen_local.triggers import QueueTrigger, StreamTrigger

        stream_arn = session.client("dynamodb").describe_table(TableName=bp.JOBS_TABLE.name)["Table"][
            "LatestStreamArn"
        ]
        self.triggers = [
            StreamTrigger(stream_arn, bp.JOB_EVENTS_FUNCTION.name, REGION),
            QueueTrigger(queues["intake"], bp.INTAKE_FUNCTION.name, REGION),
            QueueTrigger(queues["webhooks"], bp.WEBHOOKS_FUNCTION.name, REGION),
        ]
        for trigger in self.triggers:
            trigger.start()

    def _schedule_sweeps(self, session: boto3.session.Session) -> None:
        """The cloud's sweeper rule (bp.DEFAULT.sweep_schedule), the same rule in moto, fired on
        its rate by a ScheduleTrigger (moto stores scheduled rules but never fires them)."""
        from imagegen_local.triggers import ScheduleTrigger

        schedule, events = bp.DEFAULT.sweep_schedule, session.client("events")
        events.put_rule(Name=schedule.name, ScheduleExpression=schedule.expression, State="ENABLED")
        target = {"Id": "sweeper", "Arn": self.function_arns[schedule.target.name]}
        retry = {"MaximumRetryAttempts": schedule.retry_attempts}
        events.put_targets(Rule=schedule.name, Targets=[{**target, "RetryPolicy": retry}])
        self.triggers.append(ScheduleTrigger(schedule.name, REGION))
        self.triggers[-1].start()

    def _create_uploads_bucket(self, s3: Any) -> str:
        """S3 edits' bucket, as the CDK stack declares it: private, versioned (an event names the
        object version, which is what makes a redelivered event recognisable)."""
        bucket = _create_private_bucket(s3, "uploads")
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket

    def _wire_edits(self, session: boto3.session.Session, bucket: str, topic_arn: str) -> None:
        """ObjectCreated under edits/ -> the s3-edit function (moto invokes it synchronously,
        inside the PutObject call, and drops its errors: tests also call it directly); job events
        with source = s3 -> the result writer (moto applies the filter policy, then invokes it)."""
        lambda_client = session.client("lambda")
        edit_arn = self.function_arns[bp.S3_EDIT_FUNCTION.name]
        result_arn = self.function_arns[bp.S3_RESULT_FUNCTION.name]
        lambda_client.add_permission(
            FunctionName=edit_arn,
            StatementId="s3-edits",
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            SourceArn=f"arn:aws:s3:::{bucket}",
            SourceAccount=ACCOUNT,
        )
        session.client("s3").put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "Id": "imagegen-s3-edits",
                        "LambdaFunctionArn": edit_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": bp.EDITS_PREFIX}]}},
                    }
                ]
            },
        )
        lambda_client.add_permission(
            FunctionName=result_arn,
            StatementId="sns-edit-results",
            Action="lambda:InvokeFunction",
            Principal="sns.amazonaws.com",
            SourceArn=topic_arn,
        )
        session.client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol="lambda",
            Endpoint=result_arn,
            Attributes={"FilterPolicy": json.dumps(bp.S3_RESULT_FILTER_POLICY)},
        )
