"""SNS: the job events topic (our published contract) and the alarms topic, both encrypted
with one customer-managed key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from imagegen_infra import blueprint as bp


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, names: bp.Blueprint) -> None:
        super().__init__(scope, construct_id)
        # A CMK rather than aws/sns: the AWS-managed key's policy cannot be edited, so CloudWatch
        # alarms could not publish to a topic encrypted with it.
        self.key = kms.Key(
            self,
            "TopicsKey",
            alias=names.topics_key_alias,
            description=f"Encrypts the {names.prefix} SNS topics (job events, alarms)",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            # The topics go with the stack, and with them the need for their key.
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Publishing functions get the key in their role (grant_publish_events); CloudWatch is a
        # service principal and needs the key policy to say so.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.events_topic = self._topic("EventsTopic", names.events_topic, f"{names.prefix} job events")
        self.alarms_topic = self._topic("AlarmsTopic", names.alarms_topic, f"{names.prefix} alarms")

    def _topic(self, construct_id: str, name: str, display_name: str) -> sns.Topic:
        return sns.Topic(
            self,
            construct_id,
            topic_name=name,
            display_name=display_name,
            master_key=self.key,
            enforce_ssl=True,
        )

    def grant_publish_events(self, grantee: iam.IGrantable) -> None:
        """sns:Publish on the events topic and the two key actions publishing needs, spelled out
        (CDK's grant_publish would allow kms:GenerateDataKey* on the key)."""
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["sns:Publish"], resource_arns=[self.events_topic.topic_arn]
        )
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["kms:GenerateDataKey", "kms:Decrypt"], resource_arns=[self.key.key_arn]
        )
