"""The dashboard shows what an operator needs, the alarms watch API faults, latency and throttling,
and every alarm reaches the SNS topic when alarmEmail is given (stacks/monitoring.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from stacks import monitoring

QUERY, INGEST, COMPACT = (f"lambdas.{n}.handler.handler" for n in ("query", "ingest", "compact"))


@pytest.fixture(scope="module")
def segments(synth) -> Template:
    return synth()[1]


@pytest.fixture(scope="module")
def vectors(synth) -> Template:
    return synth(indexBackend="s3vectors")[1]


@pytest.fixture(scope="module")
def emailed(synth) -> Template:
    return synth(alarmEmail="ops@example.com")[1]


def _only(template: Template, kind: str) -> tuple[str, dict[str, Any]]:
    found = dict(template.find_resources(kind))
    assert len(found) == 1, sorted(found)
    return next(iter(found.items()))


def _logical_id(template: Template, kind: str, prefix: str) -> str:
    ids = [k for k in template.find_resources(kind) if k.startswith(prefix)]
    assert len(ids) == 1, ids
    return ids[0]


def _function_id(template: Template, handler: str) -> str:
    ids = [
        k
        for k, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == handler
    ]
    assert len(ids) == 1, ids
    return ids[0]


def _token(part: dict[str, Any]) -> str:
    """A CloudFormation intrinsic inside the dashboard body, as a readable stand-in string."""
    if "Ref" in part:
        return f"Ref:{part['Ref']}"
    if "Fn::GetAtt" in part:
        return "GetAtt:" + ".".join(part["Fn::GetAtt"])
    return json.dumps(part).replace('"', "'")


def _body(template: Template) -> dict[str, Any]:
    """The dashboard's JSON body, with each reference replaced by a stand-in string."""
    _, dashboard = _only(template, "AWS::CloudWatch::Dashboard")
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, dict):
        separator, parts = body["Fn::Join"]
        body = separator.join(p if isinstance(p, str) else _token(p) for p in parts)
    return json.loads(body)


def _graphed(template: Template) -> list[dict[str, Any]]:
    """Every metric drawn: namespace, name, dimensions and statistic; or a math/search expression."""
    drawn = []
    for widget in _body(template)["widgets"]:
        for line in widget["properties"].get("metrics", []) if widget["type"] == "metric" else []:
            *fields, options = line if isinstance(line[-1], dict) else (*line, {})
            if not fields:
                drawn.append({"expression": options["expression"], "title": widget["properties"]["title"]})
                continue
            namespace, name, *dims = fields
            drawn.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "dimensions": dict(zip(dims[::2], dims[1::2], strict=True)),
                    "stat": options.get("stat"),
                    "title": widget["properties"]["title"],
                }
            )
    return drawn


def _has(
    drawn: list[dict[str, Any]], namespace: str, name: str, stat: str | None = None, **dims: str
) -> bool:
    return any(
        d.get("namespace") == namespace
        and d.get("name") == name
        and (stat is None or d["stat"] == stat)
        and all(d["dimensions"].get(k) == v for k, v in dims.items())
        for d in drawn
    )


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {k: a["Properties"] for k, a in template.find_resources("AWS::CloudWatch::Alarm").items()}


def _metric_of(alarm: dict[str, Any]) -> dict[str, Any]:
    """The one metric an alarm watches, in either of CloudFormation's two spellings."""
    if "MetricName" in alarm:
        return {
            "Namespace": alarm["Namespace"],
            "MetricName": alarm["MetricName"],
            "Dimensions": alarm.get("Dimensions", []),
            "Stat": alarm.get("ExtendedStatistic") or alarm.get("Statistic"),
            "Period": alarm["Period"],
        }
    (query,) = alarm["Metrics"]
    stat = query["MetricStat"]
    return {
        **stat["Metric"],
        "Dimensions": stat["Metric"].get("Dimensions", []),
        "Stat": stat["Stat"],
        "Period": stat["Period"],
    }


def _alarms_on(template: Template, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        a
        for a in _alarms(template).values()
        if _metric_of(a)["Namespace"] == namespace and _metric_of(a)["MetricName"] == name
    ]


# --- the dashboard ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["segments", "vectors"])
def test_one_dashboard_named_after_the_stack_and_region(request: pytest.FixtureRequest, name: str) -> None:
    template: Template = request.getfixturevalue(name)
    _, dashboard = _only(template, "AWS::CloudWatch::Dashboard")
    # dashboard names are per account, not per region: the stack's name and its region
    assert dashboard["Properties"]["DashboardName"] == {
        "Fn::Join": ["", ["ImgSearch-dev-", {"Ref": "AWS::Region"}]]
    }


@pytest.mark.parametrize("name", ["segments", "vectors"])
def test_dashboard_shows_ingest_queue_query_and_error_metrics(
    request: pytest.FixtureRequest, name: str
) -> None:
    template: Template = request.getfixturevalue(name)
    drawn = _graphed(template)
    queue = f"GetAtt:{_logical_id(template, 'AWS::SQS::Queue', 'IngestQueue')}.QueueName"
    dlq = f"GetAtt:{_logical_id(template, 'AWS::SQS::Queue', 'IngestDeadLetters')}.QueueName"
    stage = f"Ref:{_logical_id(template, 'AWS::ApiGateway::Stage', 'QueryApiDeploymentStage')}"
    query = f"Ref:{_function_id(template, QUERY)}"
    ingest = f"Ref:{_function_id(template, INGEST)}"

    # ingest rate, CAS retries (the functions' own metrics)
    for metric in ("ImagesIndexed", "ImagesDeleted", "CasRetries", "EmbedMilliseconds"):
        assert _has(drawn, "ImgSearch", metric, service="imgsearch"), metric
    assert _has(drawn, "AWS/Lambda", "Invocations", FunctionName=ingest)
    # rejections, one line per reason
    searches = [d["expression"] for d in drawn if "expression" in d and "ImagesRejected" in d["expression"]]
    assert searches == [
        "SEARCH('{ImgSearch,reason,service} MetricName=\"ImagesRejected\" service=\"imgsearch\"', 'Sum', 300)"
    ]
    # queue depth and age, dead letters
    assert _has(drawn, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue)
    assert _has(drawn, "AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName=queue)
    assert _has(drawn, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=dlq)
    # query latency p50 / p99: the API's and the function's own
    for stat in ("p50", "p99"):
        assert _has(drawn, "AWS/ApiGateway", "Latency", stat, ApiName="Api", Stage=stage), stat
        assert _has(drawn, "ImgSearch", "QueryMilliseconds", stat, service="imgsearch"), stat
    assert _has(drawn, "ImgSearch", "QueryRejected", service="imgsearch")
    # 4xx / 5xx
    assert _has(drawn, "AWS/ApiGateway", "4XXError", "Sum", ApiName="Api", Stage=stage)
    assert _has(drawn, "AWS/ApiGateway", "5XXError", "Sum", ApiName="Api", Stage=stage)
    # throttles: the functions' and the API's 429s
    assert _has(drawn, "AWS/Lambda", "Throttles", FunctionName=query)
    assert _has(drawn, "AWS/Lambda", "Throttles", FunctionName=ingest)
    assert _has(drawn, "ImgSearch/ImgSearch-dev", monitoring.THROTTLED_METRIC, "Sum")
    # every function's errors and duration
    for function in (query, ingest):
        assert _has(drawn, "AWS/Lambda", "Errors", FunctionName=function)
        assert _has(drawn, "AWS/Lambda", "Duration", FunctionName=function)


def test_dashboard_shows_compaction_where_there_is_a_compaction_function(segments: Template) -> None:
    drawn = _graphed(segments)
    compact = f"Ref:{_function_id(segments, COMPACT)}"
    assert _has(drawn, "ImgSearch", "CompactionSeconds", "Maximum", service="imgsearch")
    assert _has(drawn, "ImgSearch", "SegmentsFolded", service="imgsearch")
    assert _has(drawn, "AWS/Lambda", "Duration", FunctionName=compact)
    assert _has(drawn, "AWS/Lambda", "Throttles", FunctionName=compact)


def test_no_compaction_on_the_dashboard_of_an_s3_vectors_stack(vectors: Template) -> None:
    drawn = _graphed(vectors)
    assert not any(d.get("name") in ("CompactionSeconds", "SegmentsFolded", "EntriesDropped") for d in drawn)
    assert "Compaction" not in json.dumps(_body(vectors))


@pytest.mark.parametrize("name", ["segments", "vectors"])
def test_dashboard_lists_every_alarm(request: pytest.FixtureRequest, name: str) -> None:
    template: Template = request.getfixturevalue(name)
    (status,) = [w for w in _body(template)["widgets"] if w["type"] == "alarm"]
    assert sorted(status["properties"]["alarms"]) == sorted(f"GetAtt:{k}.Arn" for k in _alarms(template))


# --- the alarms ---------------------------------------------------------------------------------------


def test_api_5xx_alarm(segments: Template) -> None:
    (alarm,) = _alarms_on(segments, "AWS/ApiGateway", "5XXError")
    metric = _metric_of(alarm)
    assert metric["Stat"] == "Sum" and metric["Period"] == 300
    assert {d["Name"] for d in metric["Dimensions"]} == {"ApiName", "Stage"}
    assert alarm["Threshold"] == monitoring.API_5XX_MAX == 5
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"


def test_api_p99_latency_alarm(segments: Template) -> None:
    (alarm,) = _alarms_on(segments, "AWS/ApiGateway", "Latency")
    metric = _metric_of(alarm)
    assert metric["Stat"] == "p99" and metric["Period"] == 300
    assert alarm["Threshold"] == monitoring.API_P99_LATENCY.to_milliseconds() == 2000  # Latency is in ms
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == monitoring.API_P99_LATENCY_PERIODS
    assert alarm["EvaluateLowSampleCountPercentile"] == "ignore"


def test_throttling_alarms(segments: Template) -> None:
    throttles = _alarms_on(segments, "AWS/Lambda", "Throttles")
    assert len(throttles) == 1  # the query function only: compaction is throttled by design
    (alarm,) = throttles
    assert _metric_of(alarm)["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": _function_id(segments, QUERY)}}
    ]
    assert _metric_of(alarm)["Stat"] == "Sum"
    assert alarm["Threshold"] == monitoring.QUERY_THROTTLES_MAX == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"

    (alarm,) = _alarms_on(segments, "ImgSearch/ImgSearch-dev", monitoring.THROTTLED_METRIC)
    assert _metric_of(alarm)["Stat"] == "Sum"
    assert alarm["Threshold"] == monitoring.API_THROTTLED_MIN == 10
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == monitoring.API_THROTTLED_PERIODS


def test_429s_are_counted_from_the_api_access_log(segments: Template) -> None:
    logs = _logical_id(segments, "AWS::Logs::LogGroup", "QueryAccessLogs")
    _, stage = _only(segments, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": [logs, "Arn"]}
    assert '"status"' in stage["Properties"]["AccessLogSetting"]["Format"]
    _, metric_filter = _only(segments, "AWS::Logs::MetricFilter")
    assert metric_filter["Properties"] == {
        "FilterPattern": '{ $.status = "429" }',
        "LogGroupName": {"Ref": logs},
        "MetricTransformations": [
            {
                "MetricName": monitoring.THROTTLED_METRIC,
                "MetricNamespace": "ImgSearch/ImgSearch-dev",
                "MetricValue": "1",
                "Unit": "Count",
            }
        ],
    }


@pytest.mark.parametrize(("name", "count"), [("segments", 9), ("vectors", 8)])
def test_alarm_count_and_unique_names(request: pytest.FixtureRequest, name: str, count: int) -> None:
    """DLQ, backlog, errors of each function (3 or 2), 5xx, p99, query throttles, 429s."""
    alarms = _alarms(request.getfixturevalue(name))
    assert len(alarms) == count
    named = [a["AlarmName"] for a in alarms.values() if "AlarmName" in a]
    assert len(named) == len(set(named)) == 4
    assert all(n.startswith("ImgSearch-dev-") for n in named)  # one stack per stage: names do not collide


def test_without_alarm_email_no_topic_and_no_actions(segments: Template) -> None:
    segments.resource_count_is("AWS::SNS::Topic", 0)
    assert not any(a.get("AlarmActions") for a in _alarms(segments).values())


def test_alarm_email_puts_every_alarm_on_the_topic(emailed: Template) -> None:
    topic, _ = _only(emailed, "AWS::SNS::Topic")
    alarms = _alarms(emailed)
    assert len(alarms) == 9
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], logical_id
        assert alarm.get("ActionsEnabled", True) is True, logical_id
