"""Events in and out: our EventBridge bus, the rule and queue that take job requests from it, the
job table's change stream that announces every job change, and the queue webhooks wait on.

Every queue has a dead-letter queue after blueprint.MAX_RECEIVES receives, and a stream batch
that keeps failing is recorded in its own dead-letter queue (the record's position, from which
it can be replayed): Monitoring alarms on all of them.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imagegen_infra import blueprint as bp
from imagegen_infra.constructs.acknowledge import acknowledge
from imagegen_infra.constructs.queues import DLQ_RETENTION, dead_letter_queue

# A stream record is retried (from the first failed one, in order) until it is this old: a
# downstream outage of up to a day loses no event. Past that it is set aside in the DLQ.
STREAM_MAX_RECORD_AGE = Duration.hours(24)
STREAM_RETRY_ATTEMPTS = 1000  # bounded by the record age, not the count
# A job's changes are a handful of records: small batches keep a failed batch's retry short.
STREAM_BATCH_SIZE = 25
QUEUE_BATCH_SIZE = 10


class EventRoutes(Construct):
    def __init__(self, scope: Construct, construct_id: str, names: bp.Blueprint) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=names.event_bus)
        self.intake_dead_letters = dead_letter_queue(
            self, "IntakeDeadLetters", names.dead_letter_queue_of(names.intake_queue)
        )
        self.intake_queue = self._queue("IntakeQueue", names.intake_queue, self.intake_dead_letters)
        self.webhook_dead_letters = dead_letter_queue(
            self, "WebhookDeadLetters", names.dead_letter_queue_of(names.webhook_queue)
        )
        self.webhook_queue = self._queue("WebhookQueue", names.webhook_queue, self.webhook_dead_letters)
        self.stream_dead_letters = dead_letter_queue(self, "JobEventsDeadLetters", names.job_events_dlq)
        acknowledge(
            self.stream_dead_letters,
            "SQS3",
            "This is a dead-letter queue: the job table stream's on-failure destination (an event "
            "source mapping's, which cdk-nag does not recognise as a redrive source).",
        )
        # By name, in the blueprint's order (Blueprint.event_dead_letter_queues).
        self.dead_letter_queues: dict[str, sqs.IQueue] = {
            names.job_events_dlq: self.stream_dead_letters,
            names.dead_letter_queue_of(names.intake_queue): self.intake_dead_letters,
            names.dead_letter_queue_of(names.webhook_queue): self.webhook_dead_letters,
        }
        events.Rule(
            self,
            "IntakeRule",
            rule_name=names.intake_rule,
            description="Image Job Requested events on our bus -> the intake queue",
            event_bus=self.bus,
            event_pattern=events.EventPattern(detail_type=bp.INTAKE_EVENT_PATTERN["detail-type"]),
            targets=[targets.SqsQueue(self.intake_queue, dead_letter_queue=self.intake_dead_letters)],
        )

    def _queue(self, construct_id: str, name: str, dead_letters: sqs.IQueue) -> sqs.Queue:
        return sqs.Queue(
            self,
            construct_id,
            queue_name=name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,  # EventBridge sends without a key policy
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
            visibility_timeout=Duration.seconds(bp.QUEUE_VISIBILITY_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=bp.MAX_RECEIVES, queue=dead_letters),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def announce_changes_with(self, function: lambda_.Function, jobs: dynamodb.Table) -> None:
        """The jobs table's stream -> `function`, in order per job; a failed record and those after
        it in the batch are retried (it answers batchItemFailures)."""
        function.add_event_source(
            sources.DynamoEventSource(
                jobs,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=STREAM_BATCH_SIZE,
                report_batch_item_failures=True,
                retry_attempts=STREAM_RETRY_ATTEMPTS,
                max_record_age=STREAM_MAX_RECORD_AGE,
                on_failure=sources.SqsDlq(self.stream_dead_letters),
            )
        )

    def take_requests_with(self, function: lambda_.Function) -> None:
        function.add_event_source(
            sources.SqsEventSource(
                self.intake_queue, batch_size=QUEUE_BATCH_SIZE, report_batch_item_failures=True
            )
        )

    def deliver_webhooks_with(self, function: lambda_.Function) -> None:
        function.add_event_source(
            sources.SqsEventSource(
                self.webhook_queue, batch_size=QUEUE_BATCH_SIZE, report_batch_item_failures=True
            )
        )
