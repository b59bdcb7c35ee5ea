"""The whole service in one stack: the constructs of each concern, composed, and the one list
of who may do what (each function's role gets exactly the actions its code performs)."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Fn, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from imagegen.accounts import ACCOUNT, IDEMPOTENCY, LEDGER
from imagegen.edits.keys import ERROR_SUFFIX, RESULT_SUFFIX
from imagegen.jobs import OPEN_JOBS_INDEX, OWNER_INDEX
from imagegen.webhooks import WebhookSecretStore
from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.constructs.acknowledge import acknowledge
from imagegen_infra.constructs.api import Api
from imagegen_infra.constructs.data import Data
from imagegen_infra.constructs.events import EventRoutes
from imagegen_infra.constructs.functions import FunctionFactory
from imagegen_infra.constructs.monitoring import Monitoring
from imagegen_infra.constructs.notifications import Notifications
from imagegen_infra.constructs.secrets import ProviderSecrets
from imagegen_infra.constructs.storage import Storage
from imagegen_infra.constructs.workflow import Workflow, state_machine_arn

# Clients of the cloud stack use boto3's default endpoints (the local stack outputs moto's URL).
DEFAULT_ENDPOINTS = "default"
# What imagegen.jobs.JobStore and imagegen.keys.KeyStore call (no Scan, no deletes: TTL
# expires records). Add an action here when the stores start calling it.
TABLE_READ = ["dynamodb:GetItem", "dynamodb:Query"]
TABLE_READ_WRITE = [*TABLE_READ, "dynamodb:PutItem", "dynamodb:UpdateItem"]
# Where the workflow stores images: imagegen.storage.image_key (images/<job-id>/<n>.<format>).
IMAGE_KEYS = "images/*"


class ImagegenStack(Stack):
    """One deployment: every physical name comes from `names` (the stage's blueprint)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        names: bp.Blueprint,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.names = names
        log_retention = logs.RetentionDays[config.log_retention_name]
        data = Data(self, "Data", names)
        storage = Storage(self, "Storage", config, names)
        notifications = Notifications(self, "Notifications", names)
        provider_secrets = ProviderSecrets(self, "ProviderSecret", names, config.runtime.provider_chain)
        routes = EventRoutes(self, "Events", names)

        settings = config.settings(
            jobs_table=data.jobs_table.table_name,
            api_keys_table=data.api_keys_table.table_name,
            results_bucket=storage.results_bucket.bucket_name,
            uploads_bucket=storage.uploads_bucket.bucket_name,
            events_topic_arn=notifications.events_topic.topic_arn,
            state_machine_arn=state_machine_arn(self, names),
            event_bus_name=routes.bus.event_bus_name,
            webhook_queue_url=routes.webhook_queue.queue_url,
            provider_secret_id=provider_secrets.primary.secret_arn,
            provider_secret_ids={
                name: secret.secret_arn for name, secret in provider_secrets.failover.items()
            },
        )
        factory = FunctionFactory(
            self,
            "Functions",
            names=names,
            log_retention=log_retention,
            environment={
                **settings.to_environ(),
                "POWERTOOLS_SERVICE_NAME": names.service_name,
                "POWERTOOLS_METRICS_NAMESPACE": bp.METRICS_NAMESPACE,
            },
        )
        api_function = factory.create("Api", names.function("api"))
        create_task = factory.create("CreateTask", names.function("create_task"))
        poll_task = factory.create("PollTask", names.function("poll_task"))
        finalize_job = factory.create("FinalizeJob", names.function("finalize"))
        fail_job = factory.create("FailJob", names.function("fail"))
        s3_edit = factory.create("S3Edit", names.function("s3_edit"))
        s3_edit_result = factory.create("S3EditResult", names.function("s3_result"))
        sweeper = factory.create("SweepJobs", names.function("sweeper"))
        job_events = factory.create("JobEvents", names.function("job_events"))
        intake = factory.create("Intake", names.function("intake"))
        webhooks = factory.create("Webhooks", names.function("webhooks"))

        workflow = Workflow(
            self,
            "Workflow",
            names=names,
            config=config,
            log_retention=log_retention,
            steps={
                "CreateTaskFunctionArn": create_task,
                "PollTaskFunctionArn": poll_task,
                "FinalizeJobFunctionArn": finalize_job,
                "FailJobFunctionArn": fail_job,
            },
        )
        workflow.sweep_overdue_jobs_with(sweeper)
        api = Api(self, "Api", names=names, handler=api_function, config=config, log_retention=log_retention)
        storage.start_edits_with(s3_edit)
        routes.announce_changes_with(job_events, data.jobs_table)
        routes.take_requests_with(intake)
        routes.deliver_webhooks_with(webhooks)
        notifications.events_topic.add_subscription(
            subscriptions.LambdaSubscription(
                s3_edit_result,
                # Only jobs started by uploads have a result to write next to the upload.
                filter_policy={
                    attribute: sns.SubscriptionFilter.string_filter(allowlist=values)
                    for attribute, values in bp.S3_RESULT_FILTER_POLICY.items()
                },
            )
        )

        # --- who may do what ------------------------------------------------------------------
        jobs, keys = data.jobs_table, data.api_keys_table
        results, uploads = storage.results_bucket, storage.uploads_bucket
        topic, machine = notifications.events_topic, workflow.state_machine
        bus, webhook_queue = routes.bus, routes.webhook_queue
        # api: authenticate, submit and read jobs, start their workflow, sign result URLs, show
        # and rotate the caller's webhook secret (kept beside the keys: imagegen.webhooks).
        _allow_table(api_function, jobs, TABLE_READ_WRITE)
        _allow_table(api_function, jobs, ["dynamodb:Query"], index=OWNER_INDEX)  # GET /v2/jobs
        _allow_table(api_function, keys, TABLE_READ)
        _allow_webhook_secrets(api_function, keys)
        # Debit on submit, refund on cancel or a failed start, claim Idempotency-Keys.
        _allow_accounts(api_function, keys, IDEMPOTENCY)
        machine.grant_start_execution(api_function)
        _allow_objects(api_function, results, ["s3:GetObject"], IMAGE_KEYS, "presigned URLs of job images")
        # create-task: call the provider (or a failover one); OpenAI answers with the images
        # inline, stored here.
        _allow_table(create_task, jobs, TABLE_READ_WRITE)
        _allow_accounts(create_task, keys)  # the refund of a job it fails
        provider_secrets.grant_read(create_task)
        _allow_objects(create_task, results, ["s3:PutObject"], IMAGE_KEYS, "images of each job")
        # poll-task: ask the provider of the job's task how it is doing.
        _allow_table(poll_task, jobs, TABLE_READ_WRITE)
        _allow_accounts(poll_task, keys)  # the refund of a job it fails
        provider_secrets.grant_read(poll_task)
        # finalize-job: stream the images into the results bucket (multipart when large).
        _allow_table(finalize_job, jobs, TABLE_READ_WRITE)
        _allow_accounts(finalize_job, keys)  # the refund of a job it fails
        _allow_objects(
            finalize_job,
            results,
            ["s3:PutObject", "s3:AbortMultipartUpload"],
            IMAGE_KEYS,
            "images of each job",
        )
        # fail-job: record the failure (and refund).
        _allow_table(fail_job, jobs, TABLE_READ_WRITE)
        _allow_accounts(fail_job, keys)  # the refund of a job it fails
        # s3-edit: read (and presign) the upload and its inputs, submit its job as the uploads
        # owner, or answer `<name>.error.json` next to it and record the job as failed.
        _allow_objects(
            s3_edit,
            uploads,
            ["s3:GetObject", "s3:GetObjectVersion"],
            f"{bp.EDITS_PREFIX}*",
            f"uploads under {bp.EDITS_PREFIX}",
        )
        _allow_objects(
            s3_edit,
            uploads,
            ["s3:PutObject"],
            f"{bp.EDITS_PREFIX}*{ERROR_SUFFIX}",
            "answers next to an upload",
        )
        # ListBucket lets a HEAD of a missing manifest input answer 404 (an error file for the
        # user) instead of 403 (a retried failure). Not limited by s3:prefix: a HEAD carries none.
        s3_edit.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[uploads.bucket_arn])
        )
        _allow_table(s3_edit, jobs, TABLE_READ_WRITE)
        _allow_accounts(s3_edit, keys)  # the debit of a job it submits
        machine.grant_start_execution(s3_edit)
        # sweep-jobs: find open jobs long past their deadline (the sparse index), fail them.
        _allow_table(sweeper, jobs, TABLE_READ_WRITE)
        _allow_accounts(sweeper, keys)  # the refund of a job it fails
        _allow_table(sweeper, jobs, ["dynamodb:Query"], index=OPEN_JOBS_INDEX)
        # No step publishes: every job change is announced from the table's stream, below.
        # job-events: the stream in (the event source grants its reads); the topic, the bus and
        # the webhook queue out.
        notifications.grant_publish_events(job_events)
        bus.grant_put_events_to(job_events)
        webhook_queue.grant_send_messages(job_events)
        # intake: submit requested jobs as the intake owner, start them; a request it refuses
        # has no job record, so its job.rejected event is published here.
        _allow_table(intake, jobs, TABLE_READ_WRITE)
        _allow_accounts(intake, keys)  # the debit of a job it submits
        machine.grant_start_execution(intake)
        notifications.grant_publish_events(intake)
        bus.grant_put_events_to(intake)
        # webhooks: read the job (record each delivery on it), presign its images for the
        # payload, read (or create) the key's signing secret, queue the next attempt.
        _allow_table(webhooks, jobs, TABLE_READ_WRITE)
        _allow_table(webhooks, keys, TABLE_READ)
        _allow_webhook_secrets(webhooks, keys)
        _allow_objects(webhooks, results, ["s3:GetObject"], IMAGE_KEYS, "presigned URLs of job images")
        webhook_queue.grant_send_messages(webhooks)
        # s3-edit-result: read the ended job, write `<name>.result.json` next to its upload.
        _allow_table(s3_edit_result, jobs, TABLE_READ)
        _allow_objects(
            s3_edit_result,
            uploads,
            ["s3:PutObject"],
            f"{bp.EDITS_PREFIX}*{RESULT_SUFFIX}",
            "answers next to an upload",
        )

        dead_letter_queues = {
            names.dead_executions_rule.dead_letter_queue_name: workflow.backstop_dead_letters,
            **{
                f"{name}-dlq": function.dead_letter_queue
                for name, function in factory.functions.items()
                if function.dead_letter_queue
            },
            **routes.dead_letter_queues,
        }
        if list(dead_letter_queues) != names.dead_letter_queues:
            raise ValueError(f"dead-letter queues {list(dead_letter_queues)} are not the blueprint's")
        Monitoring(
            self,
            "Monitoring",
            names=names,
            alarm_topic=notifications.alarms_topic,
            functions=factory.functions,
            state_machine=machine,
            api_stage=api.stage,
            dead_letter_queues=dead_letter_queues,
        )

        # What an operator needs, described in docs/deploy.md ("Stack outputs") and read by
        # `python -m imagegen_infra.admin outputs`.
        outputs = {
            "ApiUrl": (api.url, "the API's base URL: POST /v2/images/generate, GET /v2/jobs/{id}"),
            "ResultsBucket": (results.bucket_name, "generated images, images/<job id>/<n>.<format>"),
            "UploadsBucket": (uploads.bucket_name, f"S3-triggered edits: upload under {bp.EDITS_PREFIX}"),
            "JobsTable": (jobs.table_name, "the job records"),
            "EventsTopicArn": (
                topic.topic_arn,
                "every job change, job.accepted to job.failed",
            ),
            "StateMachineArn": (machine.state_machine_arn, "the job workflow; one execution per job"),
            "EventBusName": (bus.event_bus_name, "job events (Image Job ...) and job requests, by rule"),
            "IntakeQueueUrl": (
                routes.intake_queue.queue_url,
                "where Image Job Requested events wait to be submitted",
            ),
            "IntakeDlqUrl": (
                routes.intake_dead_letters.queue_url,
                "job requests that could not be handled 5 times",
            ),
            "AwsEndpointUrl": (DEFAULT_ENDPOINTS, "AWS's own endpoints (the local stack: moto's URL)"),
            # CloudFormation outputs are readable by anyone who can see the stack, so no key is
            # one: this says how to create a key (printed once, stored only as a hash).
            "CreateApiKeyCommand": (names.create_key_command(), "creates an API key, printed once"),
            "ApiKeysTable": (keys.table_name, "the API keys, stored as SHA-256 hashes"),
            "AlarmsTopicArn": (
                notifications.alarms_topic.topic_arn,
                "every alarm publishes here: subscribe an email address or a pager",
            ),
            "DeadLetterQueueUrls": (
                Fn.join(",", [queue.queue_url for queue in dead_letter_queues.values()]),
                "events no function could handle, kept 14 days (comma-separated)",
            ),
            "ProviderSecrets": (
                ",".join(f"{name}={secret}" for name, secret in provider_secrets.secret_names.items()),
                "provider=secret name: put each provider's API key there",
            ),
            "DashboardUrl": (
                f"https://{Aws.REGION}.console.{Aws.URL_SUFFIX}/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards:name={names.dashboard}",
                "the CloudWatch dashboard: jobs, latency, executions, API, errors, queues",
            ),
        }
        if tuple(outputs) != bp.CLOUD_OUTPUT_KEYS:
            raise ValueError(f"outputs must be exactly blueprint.CLOUD_OUTPUT_KEYS, not {list(outputs)}")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)


def _allow_table(
    function: lambda_.Function, table: dynamodb.ITable, actions: list[str], index: str | None = None
) -> None:
    """Item actions on one table, or on one named index of it. Not Table.grant: once a table has
    an index, that grants every grantee `index/*`, and only the sweeper reads an index."""
    resource = table.table_arn if index is None else f"{table.table_arn}/index/{index}"
    function.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=[resource]))


def _allow_webhook_secrets(function: lambda_.Function, keys: dynamodb.ITable) -> None:
    """Writes to the keys table, limited to the webhook secrets' items (WebhookSecretStore): the
    functions that keep those secrets can never create, change or disable an API key."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[keys.table_arn],
            conditions={
                "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{WebhookSecretStore.ITEM_PREFIX}*"]}
            },
        )
    )


def _allow_accounts(function: lambda_.Function, keys: dynamodb.ITable, *more: str) -> None:
    """Writes to the keys table limited to the accounts' items (imagegen.accounts): a balance
    and its ledger (and `more` prefixes), in the transaction of a job's write. Never a key."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
            resources=[keys.table_arn],
            conditions={
                "ForAllValues:StringLike": {
                    "dynamodb:LeadingKeys": [f"{prefix}*" for prefix in (ACCOUNT, LEDGER, *more)]
                }
            },
        )
    )


def _allow_objects(
    function: lambda_.Function, bucket: s3.IBucket, actions: list[str], keys: str, what: str
) -> None:
    """Object actions on the keys matching `keys` in one bucket. Object keys are per job (or per
    upload), so the pattern is necessarily a wildcard: acknowledged for exactly that resource."""
    function.add_to_role_policy(
        iam.PolicyStatement(actions=actions, resources=[bucket.arn_for_objects(keys)])
    )
    bucket_id = Stack.of(bucket).get_logical_id(bucket.node.default_child)  # type: ignore[arg-type]
    acknowledge(
        function.role,  # type: ignore[arg-type]
        "IAM5",
        f"Object keys are created per job or upload ({what}): the wildcard covers those keys in this "
        f"one bucket, for {', '.join(actions)} only.",
        applies_to=[f"Resource::<{bucket_id}.Arn>/{keys}"],
        generated_children=True,  # the role's DefaultPolicy
    )
