"""S3: generated images (results), S3-triggered edits (uploads) and their access logs."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct

from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.constructs.acknowledge import MANAGED_POLICY, acknowledge

# The id CDK gives its (per-stack) bucket notifications handler.
NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class Storage(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, config: DeployConfig, names: bp.Blueprint
    ) -> None:
        super().__init__(scope, construct_id)
        # Receives the other buckets' server access logs, and logs nothing itself: it would log
        # its own log deliveries without end (cdk-nag accepts a log target without logs).
        self.access_logs_bucket = _bucket(
            self, "AccessLogsBucket", names, "access-logs", retention_days=config.log_retention_days
        )
        # Results are read through presigned URLs signed by the API role: SSE-S3 keeps those
        # working without granting KMS to every reader.
        self.results_bucket = _bucket(
            self,
            "ResultsBucket",
            names,
            "results",
            retention_days=config.result_retention_days,
            access_logs=self.access_logs_bucket,
        )
        # Versioned (blueprint.VERSIONED_BUCKETS): an S3 event names the object version, so a
        # redelivered event (same key and version) is recognised and does not start a second job.
        self.uploads_bucket = _bucket(
            self,
            "UploadsBucket",
            names,
            "uploads",
            retention_days=config.upload_retention_days,
            access_logs=self.access_logs_bucket,
        )

    def start_edits_with(self, handler: lambda_.IFunction) -> None:
        """Objects created under EDITS_PREFIX start edit jobs (CDK adds the invoke permission)."""
        self.uploads_bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.LambdaDestination(handler),
            s3.NotificationKeyFilter(prefix=bp.EDITS_PREFIX),
        )
        # CDK sets bucket notifications through a custom resource of its own, one per stack.
        acknowledge(
            Stack.of(self).node.find_child(NOTIFICATIONS_HANDLER_ID),
            "IAM4",
            "CDK's BucketNotifications custom resource handler, which runs only during deploys to set "
            "the uploads bucket's notification configuration; CDK gives its role "
            "AWSLambdaBasicExecutionRole (CloudWatch Logs only).",
            applies_to=[f"Policy::{MANAGED_POLICY}/service-role/AWSLambdaBasicExecutionRole"],
            generated_children=True,  # the handler's role
        )


def _bucket(
    scope: Construct,
    construct_id: str,
    names: bp.Blueprint,
    purpose: str,
    *,
    retention_days: int,
    access_logs: s3.IBucket | None = None,
) -> s3.Bucket:
    expiry = Duration.days(retention_days)
    versioned = purpose in bp.VERSIONED_BUCKETS
    return s3.Bucket(
        scope,
        construct_id,
        bucket_name=names.bucket_name(purpose, Aws.ACCOUNT_ID, Aws.REGION),
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        # Server access logs can only be delivered to an SSE-S3 bucket; the others match it.
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=versioned,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=f"{purpose}/" if access_logs else None,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire",
                expiration=expiry,
                noncurrent_version_expiration=Duration.days(1) if versioned else None,
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
        # Images and uploads are users' data (and the access logs an audit trail): kept when the
        # stack is deleted; the lifecycle rule still empties them over time.
        removal_policy=RemovalPolicy.RETAIN,
    )
