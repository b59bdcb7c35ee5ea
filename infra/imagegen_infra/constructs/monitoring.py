"""Alarms on what means a job or a request went wrong, sent to the alarms topic, and one
dashboard: the jobs our functions count (EMF) next to the services' own metrics."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from imagegen_infra import blueprint as bp

PERIOD = Duration.minutes(5)
# The metrics the functions emit (Powertools EMF): namespace and its default `service` dimension.
JOB_METRICS = ("JobsSubmitted", "JobsCompleted", "JobsFailed")


def job_metric(service: str, name: str, statistic: str = cw.Stats.SUM, label: str | None = None) -> cw.Metric:
    return cw.Metric(
        namespace=bp.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=PERIOD,
        label=label,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: bp.Blueprint,
        alarm_topic: sns.ITopic,
        functions: Mapping[str, lambda_.IFunction],
        state_machine: sfn.StateMachine,
        api_stage: apigw.Stage,
        dead_letter_queues: Mapping[str, sqs.IQueue],
    ) -> None:
        """`functions` and `dead_letter_queues` are keyed by resource name (used in alarm names)."""
        super().__init__(scope, construct_id)
        self.names = names
        self._action = cw_actions.SnsAction(alarm_topic)
        self.alarms: list[cw.Alarm] = []

        self._alarm(
            "executions-failed",
            state_machine.metric_failed(period=PERIOD),
            "job executions failed (a step's error escaped the definition's Catch)",
        )
        self._alarm(
            "executions-timed-out",
            state_machine.metric_timed_out(period=PERIOD),
            "job executions hit the state machine timeout",
        )
        self._alarm("api-5xx", api_stage.metric_server_error(period=PERIOD), "the API answered 5XX")
        self._alarm(
            "jobs-unsweepable",
            job_metric(names.service_name, "JobsUnsweepable"),
            "the sweeper found open jobs past their deadline that it could not fail: its log names them",
        )
        for name, function in functions.items():
            self._alarm(f"{name}-errors", function.metric_errors(period=PERIOD), f"{name} raised errors")
            self._alarm(f"{name}-throttles", function.metric_throttles(period=PERIOD), f"{name} throttled")
        for name, queue in dead_letter_queues.items():
            waiting = queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
            self._alarm(
                f"{name}-not-empty",
                waiting,
                f"{name} holds undelivered events: inspect them, fix the cause, replay",
            )
        self._dashboard(functions, state_machine, api_stage, dead_letter_queues)

    def _alarm(self, name: str, metric: cw.IMetric, description: str) -> None:
        alarm = cw.Alarm(
            self,
            name,
            # Names of functions and queues already carry the prefix.
            alarm_name=name if name.startswith(f"{self.names.prefix}-") else self.names.alarm_name(name),
            alarm_description=description,
            metric=metric,
            threshold=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,  # no traffic is not a failure
        )
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)

    def _dashboard(
        self,
        functions: Mapping[str, lambda_.IFunction],
        state_machine: sfn.StateMachine,
        api_stage: apigw.Stage,
        dead_letter_queues: Mapping[str, sqs.IQueue],
    ) -> None:
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=self.names.dashboard)
        service = self.names.service_name
        dashboard.add_widgets(
            cw.GraphWidget(title="Jobs", width=12, left=[job_metric(service, name) for name in JOB_METRICS]),
            cw.GraphWidget(
                title="Job latency, submit to end (s)",
                width=12,
                left=[
                    job_metric(service, "JobLatency", cw.Stats.percentile(50), "p50"),
                    job_metric(service, "JobLatency", cw.Stats.percentile(90), "p90"),
                ],
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Executions",
                width=12,
                left=[
                    state_machine.metric_started(period=PERIOD),
                    state_machine.metric_succeeded(period=PERIOD),
                    state_machine.metric_failed(period=PERIOD),
                    state_machine.metric_timed_out(period=PERIOD),
                ],
            ),
            cw.GraphWidget(
                title="API",
                width=12,
                left=[
                    api_stage.metric_count(period=PERIOD),
                    api_stage.metric_client_error(period=PERIOD),
                    api_stage.metric_server_error(period=PERIOD),
                ],
                right=[api_stage.metric_latency(period=PERIOD, statistic=cw.Stats.percentile(90))],
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Function errors",
                width=12,
                left=[
                    function.metric_errors(period=PERIOD, label=name) for name, function in functions.items()
                ],
            ),
            cw.GraphWidget(
                title="Dead-letter queues",
                width=12,
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD, label=name)
                    for name, queue in dead_letter_queues.items()
                ],
            ),
        )
        dashboard.add_widgets(cw.AlarmStatusWidget(title="Alarms", width=24, alarms=self.alarms))
