"""The two DynamoDB tables of the blueprint: jobs, and hashed API keys with their accounts."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from imagegen_infra import blueprint as bp


class Data(Construct):
    def __init__(self, scope: Construct, construct_id: str, names: bp.Blueprint) -> None:
        super().__init__(scope, construct_id)
        self.jobs_table = _table(self, "JobsTable", names.jobs_table)
        self.api_keys_table = _table(self, "ApiKeysTable", names.api_keys_table)


def _table(scope: Construct, construct_id: str, spec: bp.TableSpec) -> dynamodb.Table:
    table = dynamodb.Table(
        scope,
        construct_id,
        table_name=spec.name,
        partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=spec.ttl_attribute,
        stream=dynamodb.StreamViewType(spec.stream_view) if spec.stream_view else None,
        # Jobs (with their credit charges) and keys are the service's data: a stack deletion
        # must not take them along.
        removal_policy=RemovalPolicy.RETAIN,
    )
    for index in spec.indexes:
        table.add_global_secondary_index(
            index_name=index.name,
            partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType(index.projection),
        )
    return table
