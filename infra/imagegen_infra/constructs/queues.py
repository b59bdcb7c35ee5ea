"""Dead-letter queues: where an asynchronous delivery that kept failing ends up."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imagegen_infra import blueprint as bp

DLQ_RETENTION = Duration.seconds(bp.QUEUE_RETENTION_SECONDS)


def dead_letter_queue(scope: Construct, construct_id: str, queue_name: str) -> sqs.Queue:
    """Encrypted (SQS-managed keys: AWS services can send without a key policy) and TLS-only.
    Every one of these is alarmed on in Monitoring."""
    return sqs.Queue(
        scope,
        construct_id,
        queue_name=queue_name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=DLQ_RETENTION,
        removal_policy=RemovalPolicy.DESTROY,
    )
