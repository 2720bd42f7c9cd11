"""Monitoring: one CloudWatch dashboard for the stack, and alarms (to an SNS topic if asked).

The dashboard comes from cdk-monitoring-constructs (cdklabs; pinned in pyproject.toml's `cdk` extra),
not from hand-written widgets: its MonitoringFacade draws the standard sections for the ingest queue
and its DLQ (depth, age of the oldest message, in/out), each Lambda function (rate, duration p50/p90/p99,
errors, throttles, concurrency) and the REST API (requests, latency p50/p99, 4XXError, 5XXError), and
draws each alarm's threshold on its graph. The functions' own Powertools metrics (namespace ImgSearch,
dimension service=imgsearch, stacks/wiring.COMMON_ENVIRONMENT) are custom metric groups beside them:
ingest counts, rejections by reason, manifest CAS retries, query time p50/p99, compaction duration.
One dashboard only, no summary or alarm dashboard: an account's first three dashboards are free and
each further one costs $3 a month (docs/COST.md). The Powertools metrics name no stage (the same
namespace and service everywhere), so two stages in one account and region share those graphs; the
AWS metrics and the 429 count are the stack's own.

Alarms, all on the SNS topic when alarmEmail is set:

- the first ones, written with aws_cloudwatch: a message in the DLQ, a stuck queue (oldest message
  over 15 minutes), any error of each function;
- made through the facade (so they are drawn on their graphs): API Gateway 5XXError, the API's p99
  Latency, Throttles of the query function, and throttled API answers (429). API Gateway has no 429
  metric of its own (429s are only part of 4XXError), so a metric filter counts them in the API's
  access log. The compaction function is throttled by design (reserved concurrency 1 turns away an
  invoke while one runs: stacks/compaction.py), so its throttles are drawn and never alarmed on.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from cdk_monitoring_constructs import (
    AlarmFactoryDefaults,
    CustomMetricGroup,
    CustomMetricWithAlarm,
    CustomThreshold,
    DefaultDashboardFactory,
    ErrorCountThreshold,
    LatencyThreshold,
    LatencyType,
    MonitoringFacade,
    NoopAlarmActionStrategy,
    SnsAlarmActionStrategy,
)
from constructs import Construct

# The functions' Powertools metrics: namespace and default dimension (stacks/wiring.COMMON_ENVIRONMENT).
NAMESPACE = "ImgSearch"
SERVICE = {"service": "imgsearch"}
PERIOD = Duration.minutes(5)  # of every graph and alarm below
THROTTLED_METRIC = "ApiThrottled"  # the access-log metric filter's metric, in namespace ImgSearch/<stack>

# Thresholds of the alarms made through the facade; each looks at 5-minute periods.
# 5XXError: the API answers 5xx only for faults on our side (500 internal or model_*, 502 the function
# failed, 504 it timed out) and 503 index_not_ready before the first upload. A few can be a deployment's
# first minutes or one bad cold start; more than one a minute is an outage.
API_5XX_MAX = 5  # alarm above this many in one period
# p99 of API Gateway's Latency: the whole request as callers see it. Warm, a query spends 8-23 ms
# embedding and searching (docs/BENCHMARKS.md, hybrid p50/p99) plus upload, presigning and the gateway;
# a cold start adds 1-2 s. Above 2 s for 15 minutes, more than 1 request in 100 waits like a cold start
# or worse (a scale-out storm, an index outgrowing the function's memory, slow S3). Periods with too few
# requests for a meaningful p99 are not evaluated (EvaluateLowSampleCountPercentile: ignore).
API_P99_LATENCY = Duration.seconds(2)
API_P99_LATENCY_PERIODS = 3
# Throttles of the query function: it has no reserved concurrency, so a throttle means the account's
# Lambda concurrency is used up, and the request it belonged to failed.
QUERY_THROTTLES_MAX = 0  # alarm at the first one
# 429s (the usage plan's throttleRateLimit/throttleBurstLimit, or quotaPerDay used up). A caller that
# backs off as the 429 body asks causes a few; 10 in every period for 15 minutes means callers are
# being held back: raise the limits or the quota.
API_THROTTLED_MIN = 10  # alarm at this many in each of the periods
API_THROTTLED_PERIODS = 3


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dead_letters: sqs.IQueue,
        functions: dict[str, lambda_.Function],
        api: apigw.RestApi,
        access_logs: logs.ILogGroup,
        alarm_email: str,
    ) -> None:
        """`functions` maps Ingest, Query and (segment backend only) Compaction to their functions;
        `access_logs` is the REST API's access log group (JSON lines with a `status` field)."""
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name
        self.topic: sns.Topic | None = None
        if alarm_email:
            self.topic = sns.Topic(self, "Alarms", enforce_ssl=True, master_key=None)
            self.topic.add_subscription(subs.EmailSubscription(alarm_email))
        own = self._own_alarms(queue, dead_letters, functions)
        if self.topic:
            for alarm in own:
                alarm.add_alarm_action(actions.SnsAction(self.topic))

        self.facade = MonitoringFacade(
            self,
            "Facade",
            alarm_factory_defaults=AlarmFactoryDefaults(
                actions_enabled=True,
                alarm_name_prefix=stack_name,  # alarm names are per account and region: one stack, one prefix
                action=SnsAlarmActionStrategy(on_alarm_topic=self.topic)
                if self.topic
                else NoopAlarmActionStrategy(),
                datapoints_to_alarm=1,
            ),
            dashboard_factory=DefaultDashboardFactory(
                self,
                "Dashboards",
                # Dashboard names are per account, not per region (their ARN has none): the stack and region.
                dashboard_name_prefix=f"{stack_name}-{Stack.of(self).region}",
                create_dashboard=True,
                create_summary_dashboard=False,
                create_alarm_dashboard=False,
            ),
        )
        self.facade.add_large_header(f"imgsearch: {stack_name}")
        self._ingest(queue, dead_letters, functions["Ingest"], compaction="Compaction" in functions)
        self._query(api, functions["Query"], access_logs, stack_name)
        if "Compaction" in functions:  # none with indexBackend=s3vectors
            self._compaction(functions["Compaction"])
        self.alarms: list[cw.AlarmBase] = [*own, *(a.alarm for a in self.facade.created_alarms())]
        self.facade.add_widget(cw.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24, height=4))
        self.dashboard = self.facade.created_dashboard()

    def _own_alarms(
        self, queue: sqs.IQueue, dead_letters: sqs.IQueue, functions: dict[str, lambda_.Function]
    ) -> list[cw.Alarm]:
        alarms = [
            dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1)
            ).create_alarm(
                self,
                "DeadLetters",
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="Ingest messages failed maxReceiveCount times: inspect the DLQ, fix, then redrive.",
            ),
            queue.metric_approximate_age_of_oldest_message(period=Duration.minutes(5)).create_alarm(
                self,
                "IngestBacklog",
                threshold=900,
                evaluation_periods=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description="Uploads wait over 15 minutes to be indexed.",
            ),
        ]
        for name, function in functions.items():
            alarms.append(
                function.metric_errors(period=Duration.minutes(5)).create_alarm(
                    self,
                    f"{name}Errors",
                    threshold=1,
                    evaluation_periods=1,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"The {name} function failed (see its log group).",
                )
            )
        return alarms

    def _ingest(
        self, queue: sqs.IQueue, dead_letters: sqs.IQueue, function: lambda_.IFunction, *, compaction: bool
    ) -> None:
        self.facade.monitor_custom(
            alarm_friendly_name="IngestMetrics",
            human_readable_name="Ingest: what the ingest function did (namespace ImgSearch)",
            metric_groups=[
                CustomMetricGroup(
                    title="Images indexed, deleted, skipped (per 5 min)",
                    metrics=[
                        _metric("ImagesIndexed", "indexed"),
                        _metric("ImagesDeleted", "deleted"),
                        _metric("ChangesSkipped", "skipped (stale or repeated events)"),
                    ],
                ),
                CustomMetricGroup(
                    title="Images rejected, by reason (per 5 min)",
                    metrics=[
                        cw.MathExpression(  # one line per reason, whichever reasons occur
                            expression=(
                                f'SEARCH(\'{{{NAMESPACE},reason,service}} MetricName="ImagesRejected" '
                                f"service=\"{SERVICE['service']}\"', 'Sum', {int(PERIOD.to_seconds())})"
                            ),
                            using_metrics={},
                            label="${PROP('Dim.reason')}",
                            period=PERIOD,
                        )
                    ],
                ),
                CustomMetricGroup(
                    title="Manifest CAS retries"
                    + (", compactions requested" if compaction else "")
                    + " (per 5 min)",
                    metrics=[_metric("CasRetries", "CAS retries")]
                    + ([_metric("CompactionRequested", "compactions requested")] if compaction else []),
                ),
                CustomMetricGroup(
                    title="Embedding time of a batch (ms)",
                    metrics=[
                        _metric("EmbedMilliseconds", "p50", "p50"),
                        _metric("EmbedMilliseconds", "p99", "p99"),
                    ],
                ),
            ],
        )
        self.facade.monitor_sqs_queue_with_dlq(
            queue=queue,
            dead_letter_queue=dead_letters,
            alarm_friendly_name="IngestQueue",
            human_readable_name="Ingest queue",
        )
        self.facade.monitor_lambda_function(
            lambda_function=function,
            alarm_friendly_name="IngestFunction",
            human_readable_name="Ingest function",
            is_iterator=False,  # fed by SQS, not a stream: no iterator age
        )

    def _query(
        self, api: apigw.RestApi, function: lambda_.IFunction, access_logs: logs.ILogGroup, stack_name: str
    ) -> None:
        stage = api.deployment_stage.stage_name
        self.facade.monitor_api_gateway(
            api=api,
            api_stage=stage,
            alarm_friendly_name="Api",
            human_readable_name="Query API",
            latency_types_to_render=[LatencyType.P50, LatencyType.P99],
            add5_xx_fault_count_alarm={
                "Critical": ErrorCountThreshold(
                    max_error_count=API_5XX_MAX,
                    period=PERIOD,
                    evaluation_periods=1,
                    treat_missing_data_override=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description_override=(
                        f"The query API answered more than {API_5XX_MAX} requests with 5xx in 5 minutes: "
                        "see the query function's log group and the API's access log."
                    ),
                )
            },
            add_latency_p99_alarm={
                "Warning": LatencyThreshold(
                    max_latency=API_P99_LATENCY,
                    period=PERIOD,
                    evaluation_periods=API_P99_LATENCY_PERIODS,
                    datapoints_to_alarm=API_P99_LATENCY_PERIODS,
                    evaluate_low_sample_count_percentile=False,
                    treat_missing_data_override=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description_override=(
                        f"The query API's p99 latency stayed above {API_P99_LATENCY.to_seconds()} s for "
                        f"{API_P99_LATENCY_PERIODS * 5} minutes: see the query function's duration, cold "
                        "starts and memory."
                    ),
                )
            },
        )
        throttled = logs.MetricFilter(
            self,
            "ApiThrottledFilter",
            log_group=access_logs,
            filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
            # The access log names no stage, so the stack is in the namespace (no static dimensions).
            metric_namespace=f"{NAMESPACE}/{stack_name}",
            metric_name=THROTTLED_METRIC,
            metric_value="1",
            unit=cw.Unit.COUNT,
        ).metric(statistic="Sum", period=PERIOD, label="429: rate limit or quota")
        self.facade.monitor_custom(
            alarm_friendly_name="QueryMetrics",
            human_readable_name="Queries: what the query function did (namespace ImgSearch), 429s from the access log",
            metric_groups=[
                CustomMetricGroup(
                    title="Query time in the function (ms): embed, search, answer",
                    metrics=[
                        _metric("QueryMilliseconds", "p50", "p50"),
                        _metric("QueryMilliseconds", "p99", "p99"),
                    ],
                ),
                CustomMetricGroup(
                    title="Queries rejected (not an image), cold starts (per 5 min)",
                    metrics=[
                        _metric("QueryRejected", "rejected"),
                        _metric(
                            "ColdStart",
                            "cold starts",
                            dimensions={"function_name": function.function_name, **SERVICE},
                        ),
                    ],
                ),
                CustomMetricGroup(
                    title="Throttled API answers, 429 (per 5 min)",
                    metrics=[
                        CustomMetricWithAlarm(
                            metric=throttled,
                            alarm_friendly_name="ApiThrottled",
                            add_alarm={
                                "Warning": CustomThreshold(
                                    threshold=API_THROTTLED_MIN,
                                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                                    period=PERIOD,
                                    evaluation_periods=API_THROTTLED_PERIODS,
                                    datapoints_to_alarm=API_THROTTLED_PERIODS,
                                    treat_missing_data_override=cw.TreatMissingData.NOT_BREACHING,
                                    alarm_description_override=(
                                        f"The query API throttled (429) at least {API_THROTTLED_MIN} requests "
                                        f"in each 5 minutes for {API_THROTTLED_PERIODS * 5} minutes: raise "
                                        "throttleRateLimit / throttleBurstLimit, or quotaPerDay."
                                    ),
                                )
                            },
                        )
                    ],
                ),
            ],
        )
        self.facade.monitor_lambda_function(
            lambda_function=function,
            alarm_friendly_name="QueryFunction",
            human_readable_name="Query function",
            is_iterator=False,
            add_throttles_count_alarm={
                "Critical": ErrorCountThreshold(
                    max_error_count=QUERY_THROTTLES_MAX,
                    period=PERIOD,
                    evaluation_periods=1,
                    treat_missing_data_override=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description_override=(
                        "The query function was throttled: the account's Lambda concurrency is used up and "
                        "those requests failed; raise the concurrency quota or reserve some for the function."
                    ),
                )
            },
        )

    def _compaction(self, function: lambda_.IFunction) -> None:
        self.facade.monitor_custom(
            alarm_friendly_name="CompactionMetrics",
            human_readable_name="Compaction: what the compaction function did (namespace ImgSearch)",
            metric_groups=[
                CustomMetricGroup(
                    title="Compaction duration (s)",
                    metrics=[
                        _metric("CompactionSeconds", "longest", "Maximum"),
                        _metric("CompactionSeconds", "average", "Average"),
                    ],
                ),
                CustomMetricGroup(
                    title="Segments folded, entries dropped (per 5 min)",
                    metrics=[
                        _metric("SegmentsFolded", "segments folded"),
                        _metric("EntriesDropped", "entries dropped"),
                    ],
                ),
            ],
        )
        self.facade.monitor_lambda_function(
            lambda_function=function,
            alarm_friendly_name="CompactionFunction",
            human_readable_name="Compaction function (reserved concurrency 1: throttles are expected)",
            is_iterator=False,
        )


def _metric(
    name: str, label: str, statistic: str = "Sum", *, dimensions: dict[str, str] | None = None
) -> cw.Metric:
    """One of the functions' Powertools metrics (namespace ImgSearch, dimension service=imgsearch)."""
    return cw.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=dimensions or SERVICE,
        statistic=statistic,
        period=PERIOD,
        label=label,
    )
