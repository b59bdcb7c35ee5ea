"""The job state machine, deployed from the same definition the local stack executes, and the
backstop that fails a job whose execution died outside the definition's own Catch."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.constructs.acknowledge import acknowledge
from imagegen_infra.constructs.queues import dead_letter_queue
from imagegen_infra.workflow_definition import definition_json


def state_machine_arn(scope: Construct, names: bp.Blueprint) -> str:
    """The machine's ARN from its name: the functions' environment needs it, and taking it from
    the machine would make a cycle (the machine references the functions)."""
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=names.state_machine,
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class Workflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: bp.Blueprint,
        config: DeployConfig,
        steps: Mapping[str, lambda_.IFunction],
        log_retention: logs.RetentionDays,
    ) -> None:
        """`steps` maps each name of Blueprint.workflow_functions to its function."""
        super().__init__(scope, construct_id)
        if set(steps) != set(names.workflow_functions):
            raise ValueError(f"steps {sorted(steps)} are not blueprint.WORKFLOW_FUNCTIONS")
        self.names = names
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=names.state_machine_log_group,
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=names.state_machine,
            state_machine_type=sfn.StateMachineType[config.workflow_type],
            definition_body=sfn.DefinitionBody.from_string(
                definition_json(config.runtime.job_deadline_seconds)
            ),
            definition_substitutions={name: function.function_arn for name, function in steps.items()},
            # Execution data is a job id and a routing decision (StepState), never keys or images.
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
        )
        # Exactly the four step functions, unqualified (the definition invokes no version or alias).
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[function.function_arn for function in steps.values()],
            )
        )
        acknowledge(
            self.state_machine.role,
            "IAM5",
            "Added by CDK for logging and tracing: the CloudWatch Logs delivery actions "
            "(logs:CreateLogDelivery, PutResourcePolicy, ...) and X-Ray's PutTraceSegments support no "
            "resource-level permissions, so '*' is the only valid resource.",
            applies_to=["Resource::*"],
            generated_children=True,  # the role's DefaultPolicy
        )
        self.backstop_dead_letters = self._fail_jobs_of_dead_executions(steps["FailJobFunctionArn"])

    def _fail_jobs_of_dead_executions(self, fail_job: lambda_.IFunction) -> sqs.Queue:
        """A Standard execution that times out, is aborted or fails never reaches RecordFailure:
        Step Functions' status-change event hands the fail-job function the execution name (the
        job id) and the status, so no job stays QUEUED or PROCESSING. Recording is idempotent:
        a job already terminal is left as it is."""
        rule = self.names.dead_executions_rule
        dead_letters = dead_letter_queue(self, "BackstopDeadLetters", rule.dead_letter_queue_name)
        acknowledge(
            dead_letters,
            "SQS3",
            "This queue is itself a dead-letter queue (of the EventBridge target that fails the jobs of "
            "dead executions); cdk-nag recognises only DLQs of queues and functions. Nothing consumes "
            "it: an alarm watches it.",
        )
        pattern = rule.event_pattern(self.state_machine.state_machine_arn)
        dead_executions = events.Rule(
            self,
            "DeadExecutions",
            rule_name=rule.name,
            description=f"{self.names.prefix}: fail the job of an execution that timed out, was aborted "
            "or failed",
            event_pattern=events.EventPattern(
                source=pattern["source"],  # type: ignore[arg-type]
                detail_type=pattern["detail-type"],  # type: ignore[arg-type]
                detail=pattern["detail"],  # type: ignore[arg-type]
            ),
            targets=[
                targets.LambdaFunction(
                    fail_job,
                    dead_letter_queue=dead_letters,
                    retry_attempts=rule.retry_attempts,
                    max_event_age=Duration.seconds(rule.max_event_age_seconds),
                )
            ],
        )
        # The blueprint's input transformer, as written there (the local stack applies the same):
        # it makes a StepState (functions/imagegen/workflow.py) of the event.
        cfn_rule = dead_executions.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.add_property_override(
            "Targets.0.InputTransformer",
            {"InputPathsMap": dict(rule.input_paths), "InputTemplate": rule.input_template},
        )
        return dead_letters

    def sweep_overdue_jobs_with(self, sweeper: lambda_.IFunction) -> events.Rule:
        """The backstop for a job whose execution never started (a crash between writing the job
        and starting it) or left no status event: every few minutes the sweeper fails the jobs
        still open long after their deadline. A failed run is simply repeated by the next one."""
        schedule = self.names.sweep_schedule
        return events.Rule(
            self,
            "SweepOverdueJobs",
            rule_name=schedule.name,
            description=f"{self.names.prefix}: fail the jobs left open long after their deadline",
            schedule=events.Schedule.expression(schedule.expression),
            targets=[targets.LambdaFunction(sweeper, retry_attempts=schedule.retry_attempts)],
        )
