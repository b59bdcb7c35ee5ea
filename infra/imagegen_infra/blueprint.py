"""One description of our resources, read by the CDK stack and by the local stack.

Names, keys, handlers, timeouts and output keys live here so the two stacks cannot drift:
the local stack creates exactly these resources in moto, the CDK stack declares them.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagegen.jobs import OPEN_JOBS_INDEX, OPEN_MARKER, SWEEP_AFTER

PREFIX = "imagegen"
LOCAL_ACCOUNT = "123456789012"  # moto's default account
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index of string keys that projects only the keys."""

    name: str
    partition_key: str
    sort_key: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    partition_key: str
    ttl_attribute: str | None = None
    indexes: tuple[IndexSpec, ...] = ()


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function: its name, handler, timeout and memory, read by the function factory
    (infra) and by the local stack, which register it alike."""

    name: str
    handler: str
    timeout_seconds: int
    memory_mb: int = 256
    description: str = ""


JOBS_TABLE = TableSpec(
    f"{PREFIX}-jobs",
    "job_id",
    ttl_attribute="expires_at",
    indexes=(IndexSpec(OPEN_JOBS_INDEX, OPEN_MARKER, SWEEP_AFTER),),
)
API_KEYS_TABLE = TableSpec(f"{PREFIX}-api-keys", "key_hash")
EVENTS_TOPIC = f"{PREFIX}-events"
STATE_MACHINE = f"{PREFIX}-jobs"
PROVIDER_SECRET = f"{PREFIX}/provider-api-key"


def bucket_name(purpose: str, account: str, region: str) -> str:
    """Bucket names are global: account and region make them unique per deployment."""
    return f"{PREFIX}-{purpose}-{account}-{region}"


API_FUNCTION = FunctionSpec(f"{PREFIX}-api", "api.handler.lambda_handler", 29, 256, "Public API")
CREATE_TASK_FUNCTION = FunctionSpec(
    # Synchronous providers (OpenAI) render inside this call: a high-quality image can take minutes.
    f"{PREFIX}-create-task",
    "workflow.handler.create_task",
    300,
    512,
    "Create the upstream task(s)",
)
POLL_TASK_FUNCTION = FunctionSpec(
    f"{PREFIX}-poll-task", "workflow.handler.poll_task", 30, 256, "Poll upstream"
)
FINALIZE_FUNCTION = FunctionSpec(
    f"{PREFIX}-finalize-job", "workflow.handler.finalize_job", 300, 512, "Copy images to S3, complete the job"
)
FAIL_FUNCTION = FunctionSpec(
    f"{PREFIX}-fail-job", "workflow.handler.fail_job", 30, 256, "Record a failed job"
)
# S3-triggered edits: objects under EDITS_PREFIX in the uploads bucket start edit jobs.
S3_EDIT_FUNCTION = FunctionSpec(
    f"{PREFIX}-s3-edit", "s3_edit.handler.lambda_handler", 60, 256, "Start edits from S3"
)
# Writes `<name>.result.json` next to an upload once its job ends (the s3-edit function itself
# writes `.error.json` for a rejected upload, at once): subscribed
# to the events topic (filter: source = s3), so the workflow knows nothing of uploads.
S3_RESULT_FUNCTION = FunctionSpec(
    f"{PREFIX}-s3-edit-result", "s3_edit.handler.write_result", 30, 256, "Write edit results next to uploads"
)
EDITS_PREFIX = "edits/"
# Scheduled backstop: fails jobs left open long past their deadline (imagegen.jobs.SWEEP_GRACE).
SWEEPER_FUNCTION = FunctionSpec(
    f"{PREFIX}-sweep-jobs",
    "workflow.handler.sweep_overdue",
    120,
    256,
    "Fail jobs left open past their deadline",
)
SWEEP_EVERY_MINUTES = 5
# The result writer's subscription to EVENTS_TOPIC: only events of jobs that came from uploads
# (JobEvent's `source` message attribute), so it never runs for API jobs.
S3_RESULT_FILTER_POLICY: dict[str, list[str]] = {"source": ["s3"]}

WORKFLOW_FUNCTIONS = {
    # substitution name in the definition -> function
    "CreateTaskFunctionArn": CREATE_TASK_FUNCTION,
    "PollTaskFunctionArn": POLL_TASK_FUNCTION,
    "FinalizeJobFunctionArn": FINALIZE_FUNCTION,
    "FailJobFunctionArn": FAIL_FUNCTION,
}
ALL_FUNCTIONS = [
    API_FUNCTION,
    *WORKFLOW_FUNCTIONS.values(),
    S3_EDIT_FUNCTION,
    S3_RESULT_FUNCTION,
    SWEEPER_FUNCTION,
]

# Outputs of both stacks: CfnOutputs of the CDK stack, keys of local-stack.json.
OUTPUT_KEYS = (
    "ApiUrl",
    "ApiKey",
    "ResultsBucket",
    "UploadsBucket",
    "JobsTable",
    "EventsTopicArn",
    "StateMachineArn",
    "AwsEndpointUrl",
)

# --- Cloud deployment (the CDK stack) --------------------------------------------------------
STACK_NAME = PREFIX
# Every function's runtime; the dependency layer is built for this version (infra/bundling.py).
LAMBDA_RUNTIME = "python3.14"
API_NAME = f"{PREFIX}-api"
API_STAGE = "prod"
ALARMS_TOPIC = f"{PREFIX}-alarms"
DASHBOARD = PREFIX
# Powertools' service name and EMF namespace: the dashboard reads the metrics they name.
SERVICE_NAME = PREFIX
METRICS_NAMESPACE = PREFIX
