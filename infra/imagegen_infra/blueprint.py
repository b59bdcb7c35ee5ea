"""One description of our resources, read by the CDK stack and by the local stack.

Names, keys, handlers, timeouts, triggers and output keys live here so the two stacks cannot
drift: the local stack creates these resources in moto, the CDK stack declares them, and
tests/infra/test_drift.py holds one against the other.

Every physical name comes from one prefix: `imagegen` for the default deployment, and
`imagegen-<stage>` for a named one (`cdk deploy -c stage=dev`), so several deployments live
side by side in one account and region. `Blueprint.for_stage(stage)` gives a deployment's
names; the module-level names below are the default deployment's (what the local stack uses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from imagegen.jobs import LISTED_AT, OPEN_JOBS_INDEX, OPEN_MARKER, OWNER_INDEX, SWEEP_AFTER

PREFIX = "imagegen"
LOCAL_ACCOUNT = "123456789012"  # moto's default account
LOCAL_REGION = "us-east-1"
# A stage goes into every name, bucket names included (63 characters at most, with the account
# and the longest region names): short, lowercase, starting with a letter.
STAGE_PATTERN = r"^[a-z][a-z0-9-]{0,10}[a-z0-9]$|^[a-z]$"
STAGE_MAX_LENGTH = 12


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index of string keys that projects only the keys, or (ALL) the items."""

    name: str
    partition_key: str
    sort_key: str
    projection: str = "KEYS_ONLY"


@dataclass(frozen=True)
class TableSpec:
    name: str
    partition_key: str
    ttl_attribute: str | None = None
    indexes: tuple[IndexSpec, ...] = ()
    stream_view: str | None = None  # a DynamoDB stream of this view type, or none


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its name, handler, timeout and memory, read by the function factory
    (infra) and by the local stack, which register it alike. Functions invoked asynchronously
    (by S3, SNS or EventBridge) have a dead-letter queue, named `dead_letter_queue_name`."""

    name: str
    handler: str
    timeout_seconds: int
    memory_mb: int = 256
    description: str = ""
    dead_letter_queue: bool = False

    @property
    def dead_letter_queue_name(self) -> str | None:
        return f"{self.name}-dlq" if self.dead_letter_queue else None


@dataclass(frozen=True)
class ScheduleSpec:
    """An EventBridge rule that invokes a function on a fixed rate."""

    name: str
    every_minutes: int
    target: FunctionSpec
    retry_attempts: int = 2  # a failed run is simply repeated by the next one

    @property
    def expression(self) -> str:
        return f"rate({self.every_minutes} minutes)"


@dataclass(frozen=True)
class DeadExecutionsSpec:
    """The EventBridge rule that hands the fail-job function every execution of the state machine
    that ended outside the definition's own Catch (imagegen_infra.constructs.workflow).

    The target's input is a StepState (functions/imagegen/workflow.py) made of the event by an
    input transformer: the execution's name is the job id."""

    name: str
    statuses: tuple[str, ...]
    target: FunctionSpec
    dead_letter_queue_name: str
    retry_attempts: int = 8
    max_event_age_seconds: int = 12 * 3600
    input_paths: tuple[tuple[str, str], ...] = (
        ("detail-name", "$.detail.name"),
        ("detail-status", "$.detail.status"),
    )
    input_template: str = '{"jobId":<detail-name>,"reason":"the workflow execution ended <detail-status>"}'

    def event_pattern(self, state_machine_arn: object) -> dict[str, object]:
        """What the rule matches: a status change of one of `statuses`, of this state machine."""
        return {
            "source": ["aws.states"],
            "detail-type": ["Step Functions Execution Status Change"],
            "detail": {"stateMachineArn": [state_machine_arn], "status": list(self.statuses)},
        }


# Every function, by role; the deployment's prefix is put in front of each name.
_FUNCTIONS = {
    "api": FunctionSpec("api", "api.handler.lambda_handler", 29, 256, "Public API"),
    # Synchronous providers (OpenAI) render inside this call: a high-quality image can take minutes.
    "create_task": FunctionSpec(
        "create-task", "workflow.handler.create_task", 300, 512, "Create the upstream task(s)"
    ),
    "poll_task": FunctionSpec("poll-task", "workflow.handler.poll_task", 30, 256, "Poll upstream"),
    "finalize": FunctionSpec(
        "finalize-job", "workflow.handler.finalize_job", 300, 512, "Copy images to S3, complete the job"
    ),
    # Invoked asynchronously too, by the dead-executions rule: failures of those calls are kept.
    "fail": FunctionSpec(
        "fail-job", "workflow.handler.fail_job", 30, 256, "Record a failed job", dead_letter_queue=True
    ),
    # S3-triggered edits: objects under EDITS_PREFIX in the uploads bucket start edit jobs.
    "s3_edit": FunctionSpec(
        "s3-edit", "s3_edit.handler.lambda_handler", 60, 256, "Start edits from S3", dead_letter_queue=True
    ),
    # Writes `<name>.result.json` next to an upload once its job ends (the s3-edit function itself
    # writes `.error.json` for a rejected upload, at once): subscribed to the events topic
    # (filter: source = s3), so the workflow knows nothing of uploads.
    "s3_result": FunctionSpec(
        "s3-edit-result",
        "s3_edit.handler.write_result",
        30,
        256,
        "Write edit results next to uploads",
        dead_letter_queue=True,
    ),
    # Scheduled backstop: fails jobs left open long past their deadline (imagegen.jobs.SWEEP_GRACE).
    "sweeper": FunctionSpec(
        "sweep-jobs", "workflow.handler.sweep_overdue", 120, 256, "Fail jobs left open past their deadline"
    ),
    # Announces every change of a job (SNS topic, event bus, webhooks) from the jobs table's stream:
    # no step publishes after its write, so no event is lost between the two.
    "job_events": FunctionSpec(
        "job-events", "job_events.handler.lambda_handler", 60, 256, "Announce job changes"
    ),
    # Submits the jobs requested by events on the bus (rule -> intake queue -> here).
    "intake": FunctionSpec(
        "intake", "intake.handler.lambda_handler", 60, 256, "Submit jobs requested by events"
    ),
    # Delivers signed webhooks from the webhook queue, retried with the queue's delay.
    "webhooks": FunctionSpec(
        "webhooks", "webhooks.handler.lambda_handler", 60, 256, "Deliver signed webhooks"
    ),
}

EDITS_PREFIX = "edits/"
# The API's resources and methods, deployed (constructs/api.py) and served locally
# (imagegen_local/gateway.py) alike: explicit routes, no catch-all. `{id}` is a path parameter.
API_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/v2/images/generate"),
    ("GET", "/v2/jobs"),
    ("GET", "/v2/jobs/{id}"),
    ("POST", "/v2/jobs/{id}/cancel"),
    ("GET", "/v2/account"),
    ("GET", "/v2/webhooks/secret"),
    ("POST", "/v2/webhooks/secret/rotate"),
)
SWEEP_EVERY_MINUTES = 5
# Outcomes the definition cannot catch itself: the execution timed out, was stopped, or failed
# (including when recording the failure failed: FailureNotRecorded).
DEAD_EXECUTION_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
# The result writer's subscription to the events topic: only the ends of jobs that came from
# uploads (the `source` and `eventType` message attributes), so it never runs for API jobs.
S3_RESULT_FILTER_POLICY: dict[str, list[str]] = {
    "source": ["s3"],
    "eventType": ["job.completed", "job.failed", "job.canceled"],
}
# --- Events in and out: job changes announced from the table's stream (job_events), jobs
# requested by events on the bus (intake), signed webhooks (webhooks) ---------------------------
# The longest SQS keeps a message: two weeks to notice an alarm, fix, and replay.
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600
# A message that failed this many receives goes to its queue's dead-letter queue (alarmed).
MAX_RECEIVES = 5
# Longer than the consuming function's timeout, as Lambda requires of an event source queue.
QUEUE_VISIBILITY_SECONDS = 6 * 60
JOB_STREAM_VIEW = "NEW_AND_OLD_IMAGES"  # a change's event needs the job before and after it
# The intake rule: any source may request, IAM decides who can put events on the bus.
INTAKE_EVENT_PATTERN: dict[str, list[str]] = {"detail-type": ["Image Job Requested"]}
# Buckets, by purpose: results (images), uploads (S3 edits, versioned), access logs of both.
BUCKET_PURPOSES = ("results", "uploads", "access-logs")
VERSIONED_BUCKETS = ("uploads",)

# Every function's runtime; the dependency layer is built for this version (infra/bundling.py).
LAMBDA_RUNTIME = "python3.14"
LAMBDA_ARCHITECTURE = "arm64"
API_STAGE = "prod"  # the API Gateway stage in the URL, the same in every deployment
# Powertools' EMF namespace, shared by every deployment; the `service` dimension (the prefix)
# tells deployments apart on the dashboard.
METRICS_NAMESPACE = PREFIX

# Outputs: the keys both stacks have (CfnOutputs of the CDK stack, keys of local-stack.json)...
OUTPUT_KEYS = (
    "ApiUrl",
    "ResultsBucket",
    "UploadsBucket",
    "JobsTable",
    "EventsTopicArn",
    "StateMachineArn",
    "EventBusName",
    "IntakeQueueUrl",
    "IntakeDlqUrl",
    "AwsEndpointUrl",
)
# ...the local stack's own: a ready API key (nothing to protect on loopback)...
LOCAL_OUTPUT_KEYS = (*OUTPUT_KEYS, "ApiKey")
# ...and the cloud's: never a key (outputs are readable by whoever sees the stack), but the
# command that creates one, and the names an operator needs (docs/deploy.md, "Stack outputs").
CLOUD_OUTPUT_KEYS = (
    *OUTPUT_KEYS,
    "CreateApiKeyCommand",
    "ApiKeysTable",
    "AlarmsTopicArn",
    "DeadLetterQueueUrls",
    "ProviderSecrets",
    "DashboardUrl",
)


def validate_stage(stage: str) -> str:
    """The stage, or ValueError saying what a stage may be."""
    if len(stage) > STAGE_MAX_LENGTH or not re.fullmatch(STAGE_PATTERN, stage):
        raise ValueError(
            f"a stage is 1-{STAGE_MAX_LENGTH} lowercase letters, digits or hyphens, starting with a "
            f"letter and not ending with a hyphen (it goes into bucket names)"
        )
    return stage


@dataclass(frozen=True)
class Blueprint:
    """Every physical name of one deployment. `stage` None is the default deployment."""

    stage: str | None = None
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        if self.stage is not None:
            validate_stage(self.stage)
        object.__setattr__(self, "prefix", f"{PREFIX}-{self.stage}" if self.stage else PREFIX)

    @classmethod
    def for_stage(cls, stage: str | None) -> Blueprint:
        return cls(stage or None)

    # --- names ----------------------------------------------------------------------------------
    @property
    def stack_name(self) -> str:
        """The CloudFormation stack, and the CDK app's id for it (`cdk deploy <stack_name>`)."""
        return self.prefix

    @property
    def jobs_table(self) -> TableSpec:
        return TableSpec(
            f"{self.prefix}-jobs",
            "job_id",
            ttl_attribute="expires_at",
            indexes=(
                IndexSpec(OPEN_JOBS_INDEX, OPEN_MARKER, SWEEP_AFTER),
                # GET /v2/jobs: a page is one Query of whole records (imagegen.jobs.OWNER_INDEX).
                IndexSpec(OWNER_INDEX, "owner", LISTED_AT, projection="ALL"),
            ),
            stream_view=JOB_STREAM_VIEW,
        )

    @property
    def api_keys_table(self) -> TableSpec:
        """Keys (hashed), and beside them each owner's account, ledger, Idempotency-Key claims
        (which expire: TTL) and webhook secrets, as prefixed items (imagegen.accounts)."""
        return TableSpec(f"{self.prefix}-api-keys", "key_hash", ttl_attribute="expires_at")

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}-events"

    @property
    def alarms_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def provider_secret(self) -> str:
        """The primary provider's API key (IMAGEGEN_PROVIDER_SECRET_ID)."""
        return f"{self.prefix}/provider-api-key"

    def provider_secret_for(self, provider: str) -> str:
        """The API key of a failover provider (IMAGEGEN_PROVIDER_SECRET_IDS)."""
        return f"{self.provider_secret}/{provider}"

    def bucket_name(self, purpose: str, account: str, region: str) -> str:
        """Bucket names are global: account and region make them unique per deployment."""
        return f"{self.prefix}-{purpose}-{account}-{region}"

    def function(self, role: str) -> FunctionSpec:
        spec = _FUNCTIONS[role]
        return replace(spec, name=f"{self.prefix}-{spec.name}")

    @property
    def api_function(self) -> FunctionSpec:
        return self.function("api")

    @property
    def workflow_functions(self) -> dict[str, FunctionSpec]:
        """Substitution name in the definition -> function."""
        return {
            "CreateTaskFunctionArn": self.function("create_task"),
            "PollTaskFunctionArn": self.function("poll_task"),
            "FinalizeJobFunctionArn": self.function("finalize"),
            "FailJobFunctionArn": self.function("fail"),
        }

    @property
    def all_functions(self) -> list[FunctionSpec]:
        return [self.function(role) for role in _FUNCTIONS]

    @property
    def sweep_schedule(self) -> ScheduleSpec:
        return ScheduleSpec(
            f"{self.prefix}-sweep-overdue-jobs", SWEEP_EVERY_MINUTES, self.function("sweeper")
        )

    @property
    def dead_executions_rule(self) -> DeadExecutionsSpec:
        return DeadExecutionsSpec(
            f"{self.prefix}-dead-executions",
            DEAD_EXECUTION_STATUSES,
            self.function("fail"),
            f"{self.prefix}-backstop-dlq",
        )

    @property
    def dead_letter_queues(self) -> list[str]:
        """Every dead-letter queue: the dead-executions rule's, the functions', the events'."""
        queues = [self.dead_executions_rule.dead_letter_queue_name]
        queues += [f.dead_letter_queue_name for f in self.all_functions if f.dead_letter_queue_name]
        return queues + self.event_dead_letter_queues

    @property
    def event_bus(self) -> str:
        return f"{self.prefix}-events"

    @property
    def intake_rule(self) -> str:
        return f"{self.prefix}-job-requests"

    @property
    def intake_queue(self) -> str:
        return f"{self.prefix}-intake"

    @property
    def webhook_queue(self) -> str:
        return f"{self.prefix}-webhooks"

    @staticmethod
    def dead_letter_queue_of(queue: str) -> str:
        return f"{queue}-dlq"

    @property
    def job_events_dlq(self) -> str:
        """Where a stream batch the job-events function kept failing on is set aside."""
        return f"{self.prefix}-job-events-stream-dlq"

    @property
    def event_dead_letter_queues(self) -> list[str]:
        return [
            self.job_events_dlq,
            self.dead_letter_queue_of(self.intake_queue),
            self.dead_letter_queue_of(self.webhook_queue),
        ]

    @property
    def api_name(self) -> str:
        return f"{self.prefix}-api"

    @property
    def dashboard(self) -> str:
        return self.prefix

    @property
    def service_name(self) -> str:
        """Powertools' service: the `service` dimension of the job metrics."""
        return self.prefix

    @property
    def topics_key_alias(self) -> str:
        return f"alias/{self.prefix}-topics"

    def alarm_name(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    @property
    def state_machine_log_group(self) -> str:
        # The prefix AWS recommends for vended logs: keeps the account's log resource policy short.
        return f"/aws/vendedlogs/states/{self.state_machine}"

    @property
    def api_access_log_group(self) -> str:
        return f"/aws/vendedlogs/apigateway/{self.api_name}-access"

    def function_log_group(self, function: FunctionSpec) -> str:
        return f"/aws/lambda/{function.name}"

    def create_key_command(self) -> str:
        """How an operator creates an API key for this deployment (the stack's output)."""
        stage = f" --stage {self.stage}" if self.stage else ""
        return f"python -m imagegen_infra.admin create-key{stage} --owner <you>"


# --- the default deployment: the names the local stack and `cdk deploy` without a stage use ----
DEFAULT = Blueprint()
STACK_NAME = DEFAULT.stack_name
JOBS_TABLE = DEFAULT.jobs_table
API_KEYS_TABLE = DEFAULT.api_keys_table
EVENTS_TOPIC = DEFAULT.events_topic
ALARMS_TOPIC = DEFAULT.alarms_topic
STATE_MACHINE = DEFAULT.state_machine
PROVIDER_SECRET = DEFAULT.provider_secret
API_FUNCTION = DEFAULT.function("api")
CREATE_TASK_FUNCTION = DEFAULT.function("create_task")
POLL_TASK_FUNCTION = DEFAULT.function("poll_task")
FINALIZE_FUNCTION = DEFAULT.function("finalize")
FAIL_FUNCTION = DEFAULT.function("fail")
S3_EDIT_FUNCTION = DEFAULT.function("s3_edit")
S3_RESULT_FUNCTION = DEFAULT.function("s3_result")
SWEEPER_FUNCTION = DEFAULT.function("sweeper")
JOB_EVENTS_FUNCTION = DEFAULT.function("job_events")
INTAKE_FUNCTION = DEFAULT.function("intake")
WEBHOOKS_FUNCTION = DEFAULT.function("webhooks")
EVENT_BUS = DEFAULT.event_bus
INTAKE_RULE = DEFAULT.intake_rule
INTAKE_QUEUE = DEFAULT.intake_queue
INTAKE_DLQ = Blueprint.dead_letter_queue_of(INTAKE_QUEUE)
WEBHOOK_QUEUE = DEFAULT.webhook_queue
WEBHOOK_DLQ = Blueprint.dead_letter_queue_of(WEBHOOK_QUEUE)
WORKFLOW_FUNCTIONS = DEFAULT.workflow_functions
ALL_FUNCTIONS = DEFAULT.all_functions
API_NAME = DEFAULT.api_name
DASHBOARD = DEFAULT.dashboard
SERVICE_NAME = DEFAULT.service_name


def bucket_name(purpose: str, account: str, region: str) -> str:
    """The default deployment's bucket (Blueprint.bucket_name)."""
    return DEFAULT.bucket_name(purpose, account, region)
