"""The synthesised template: resources and the properties the design depends on."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template


@pytest.fixture(scope="module")
def template(synth) -> Template:
    return synth()[1]


def _resources(template: Template, kind: str) -> dict:
    return dict(template.find_resources(kind))


def test_images_bucket_blocks_public_access_is_encrypted_and_unversioned_by_default(
    template: Template,
) -> None:
    buckets = _resources(template, "AWS::S3::Bucket")
    assert len(buckets) == 3  # images, index, access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert "BucketEncryption" in props and "BucketName" not in props
    assert not any("VersioningConfiguration" in b["Properties"] for b in buckets.values())


def test_every_bucket_denies_plain_http(template: Template) -> None:
    policies = _resources(template, "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in statements
        )


def test_versioning_follows_context(synth) -> None:
    _, template = synth(imagesVersioned=True)
    template.has_resource_properties("AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})


def test_index_bucket_expires_retired_objects_after_the_grace_period(synth) -> None:
    _, template = synth(retiredGraceDays=3)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Status": "Enabled",
                                "ExpirationInDays": 3,
                                "TagFilters": [{"Key": "imgsearch-retired", "Value": "true"}],
                            }
                        )
                    ]
                )
            }
        },
    )


def test_ingest_queue_has_a_dlq_and_six_times_the_function_timeout(synth) -> None:
    _, template = synth(ingestTimeoutSeconds=100, maxReceiveCount=7)
    template.resource_count_is("AWS::SQS::Queue", 2)
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "VisibilityTimeout": 600,
            "RedrivePolicy": {"maxReceiveCount": 7, "deadLetterTargetArn": Match.any_value()},
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function", {"Handler": "lambdas.ingest.handler.handler", "Timeout": 100}
    )


def test_s3_notifies_the_queue_of_creates_and_removes(template: Template) -> None:
    template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "NotificationConfiguration": {
                "QueueConfigurations": [
                    Match.object_like({"Events": ["s3:ObjectCreated:*"]}),
                    Match.object_like({"Events": ["s3:ObjectRemoved:*"]}),
                ]
            }
        },
    )


def test_notification_prefix_and_suffix_filter_keys(synth) -> None:
    _, template = synth(notificationPrefix="uploads/", notificationSuffix=".jpg")
    rules = [{"Name": "suffix", "Value": ".jpg"}, {"Name": "prefix", "Value": "uploads/"}]
    template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "NotificationConfiguration": {
                "QueueConfigurations": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Events": ["s3:ObjectCreated:*"],
                                "Filter": {"Key": {"FilterRules": Match.array_with([rules[1]])}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_ingest_event_source_reports_batch_item_failures_with_batching_from_context(synth) -> None:
    _, template = synth(batchSize=50, batchWindowSeconds=20)
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": 50,
            "MaximumBatchingWindowInSeconds": 20,
        },
    )


def test_ingest_concurrency_is_bounded_by_context(synth) -> None:
    _, template = synth()
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 10}})
    _, template = synth(ingestMaxConcurrency=40)
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {"ScalingConfig": {"MaximumConcurrency": 40}})


def test_functions_run_python312_on_the_chosen_architecture_with_layers(synth) -> None:
    for arch in ("arm64", "x86_64"):
        _, template = synth(architecture=arch)
        functions = {
            f["Properties"]["Handler"]: f["Properties"]
            for f in _resources(template, "AWS::Lambda::Function").values()
            if f["Properties"]["Handler"].startswith("lambdas.")
        }
        assert set(functions) == {f"lambdas.{n}.handler.handler" for n in ("ingest", "query", "compact")}
        for handler, props in functions.items():
            assert props["Runtime"] == "python3.12" and props["Architectures"] == [arch]
            assert "FunctionName" not in props
            assert props["TracingConfig"] == {"Mode": "Active"}
            env = props["Environment"]["Variables"]
            assert env["POWERTOOLS_METRICS_NAMESPACE"] and "INDEX_URI" in env
            assert len(props["Layers"]) == (1 if "compact" in handler else 2)
        layers = _resources(template, "AWS::Lambda::LayerVersion")
        assert len(layers) == 2
        assert all(layer["Properties"]["CompatibleArchitectures"] == [arch] for layer in layers.values())


def test_memory_and_environment_follow_context(synth) -> None:
    _, template = synth(queryMemoryMb=4096, defaultMetric="cosine", presignSeconds=600)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.query.handler.handler",
            "MemorySize": 4096,
            "Environment": {
                "Variables": Match.object_like(
                    {"DEFAULT_METRIC": "cosine", "PRESIGN_SECONDS": "600", "MODEL_DIR": "/opt/model"}
                )
            },
        },
    )


def test_the_query_function_runs_numpy_on_one_blas_thread(synth) -> None:
    # its matrices are small; more OpenBLAS threads only contend with the model's (scripts/blas_threads_ab.py)
    _, template = synth()
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.query.handler.handler",
            "Environment": {"Variables": Match.object_like({"OPENBLAS_NUM_THREADS": "1"})},
        },
    )
    for function in _resources(template, "AWS::Lambda::Function").values():
        if function["Properties"]["Handler"] != "lambdas.query.handler.handler" and "Environment" in function["Properties"]:
            assert "OPENBLAS_NUM_THREADS" not in function["Properties"]["Environment"]["Variables"]  # fits use all cores


def test_compaction_runs_alone_on_a_schedule(synth) -> None:
    _, template = synth(compactSchedule="rate(1 hour)")
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": "lambdas.compact.handler.handler", "ReservedConcurrentExecutions": 1, "Timeout": 900},
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(1 hour)", "State": "ENABLED"}
    )


def test_compaction_is_told_the_retired_grace_period(synth) -> None:
    _, template = synth(retiredGraceDays=3)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.compact.handler.handler",
            "Environment": {"Variables": Match.object_like({"IMGSEARCH_RETIRED_GRACE_SECONDS": "259200"})},
        },
    )


def _logical_id(template: Template, handler: str) -> str:
    (name,) = [
        n
        for n, f in _resources(template, "AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == handler
    ]
    return name


def test_ingest_may_invoke_only_the_compaction_function_past_the_segment_threshold(synth) -> None:
    _, template = synth(compactAfterSegments=8)
    compaction = _logical_id(template, "lambdas.compact.handler.handler")
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.ingest.handler.handler",
            "Environment": {
                "Variables": Match.object_like(
                    {"COMPACT_FUNCTION_NAME": {"Ref": compaction}, "COMPACT_AFTER_SEGMENTS": "8"}
                )
            },
        },
    )
    invokes = [s for s in _statements(template) if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    assert invokes == [
        {
            "Action": "lambda:InvokeFunction",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [compaction, "Arn"]},
        }
    ]
    ingest_role = _resources(template, "AWS::Lambda::Function")[
        _logical_id(template, "lambdas.ingest.handler.handler")
    ]["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = [
        p
        for p in _resources(template, "AWS::IAM::Policy").values()
        if "lambda:InvokeFunction" in json.dumps(p["Properties"]["PolicyDocument"])
    ]
    assert policy["Properties"]["Roles"] == [{"Ref": ingest_role}]


def test_throttled_compaction_invokes_expire_instead_of_piling_up(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": _logical_id(template, "lambdas.compact.handler.handler")},
            "MaximumEventAgeInSeconds": 60,
            "MaximumRetryAttempts": 0,
        },
    )


def test_segment_threshold_zero_leaves_compaction_to_the_schedule(synth) -> None:
    _, template = synth(compactAfterSegments=0)
    env = _resources(template, "AWS::Lambda::Function")[
        _logical_id(template, "lambdas.ingest.handler.handler")
    ]["Properties"]["Environment"]["Variables"]
    assert "COMPACT_FUNCTION_NAME" not in env
    assert not [s for s in _statements(template) if "lambda:InvokeFunction" in json.dumps(s["Action"])]


def test_rest_api_needs_an_api_key_accepts_binary_images_and_is_throttled(synth) -> None:
    _, template = synth(throttleRateLimit=5, throttleBurstLimit=10)
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"BinaryMediaTypes": ["image/*", "application/octet-stream"]}
    )
    methods = _resources(template, "AWS::ApiGateway::Method")
    assert {(m["Properties"]["HttpMethod"], m["Properties"]["ApiKeyRequired"]) for m in methods.values()} == {
        ("POST", True),
        ("GET", True),
        ("GET", False),  # the search page at /: public, it asks the user for the key
    }
    assert len(methods) == 7
    get_search = [
        m["Properties"] for m in methods.values()
        if m["Properties"]["HttpMethod"] == "GET"
        and m["Properties"].get("RequestParameters", {}).get("method.request.querystring.q") is True
    ]
    assert len(get_search) == 1  # GET /search: words alone, q required at the gateway
    assert get_search[0]["RequestParameters"]["method.request.querystring.tag"] is False
    api = next(iter(_resources(template, "AWS::ApiGateway::RestApi")))
    public = [m["Properties"] for m in methods.values() if not m["Properties"]["ApiKeyRequired"]]
    assert len(public) == 3  # the page at /, GET /ping and GET /openapi.json
    assert {"Fn::GetAtt": [api, "RootResourceId"]} in [m["ResourceId"] for m in public]
    assert all(m["Integration"]["Type"] == "AWS_PROXY" and m["HttpMethod"] == "GET" for m in public)
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "ping"})
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "openapi.json"})
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{key+}"})
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": 5, "BurstLimit": 10}, "Quota": Match.object_like({"Period": "DAY"})},
    )
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10, "DataTraceEnabled": False}
                    )
                ]
            )
        },
    )


def test_cors_preflight_only_when_origins_are_given(synth, template: Template) -> None:
    assert not [
        m
        for m in _resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    _, with_cors = synth(corsOrigins=["https://example.com"])
    options = [
        m
        for m in _resources(with_cors, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    assert options
    with_cors.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.query.handler.handler",
            "Environment": {"Variables": Match.object_like({"CORS_ORIGINS": "https://example.com"})},
        },
    )


def test_alarms_watch_dead_letters_backlog_every_function_and_the_api(template: Template) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    metrics = sorted(  # cdk-monitoring-constructs writes its alarms with a Metrics array
        a["Properties"].get("MetricName") or a["Properties"]["Metrics"][0]["MetricStat"]["Metric"]["MetricName"]
        for a in alarms.values()
    )
    assert metrics == [
        "5XXError",
        "ApiThrottled",
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesVisible",
        "Errors",
        "Errors",
        "Errors",
        "Latency",
        "Throttles",
    ]


def test_alarm_email_adds_an_encrypted_in_transit_topic(synth) -> None:
    _, template = synth(alarmEmail="ops@example.com")
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    for alarm in _resources(template, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"]


def _statements(template: Template) -> list[dict]:
    return [
        s
        for policy in _resources(template, "AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_nothing_can_delete_images_or_use_wildcard_s3_actions(template: Template) -> None:
    for statement in _statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert not action.startswith("s3:Delete") and action not in ("s3:*", "*"), statement


def test_only_compaction_may_tag_index_objects(template: Template) -> None:
    text = json.dumps(
        {
            name: p
            for name, p in _resources(template, "AWS::IAM::Policy").items()
            if "s3:PutObjectTagging" in json.dumps(p)
        }
    )
    assert "Compaction" in text and "Ingest" not in text and "Query" not in text


def test_outputs_name_the_bucket_api_url_and_key_id(template: Template) -> None:
    outputs = template.find_outputs("*")
    assert {
        "ImagesBucketName",
        "IndexBucketName",
        "ApiUrl",
        "ApiKeyId",
        "IngestQueueUrl",
        "DeadLetterQueueUrl",
        "IndexUri",
    } <= set(outputs)


def test_the_cdk_stack_and_the_local_stack_share_one_wiring(template: Template) -> None:
    """stacks/wiring.py names what imgsearch/local/ builds too: notification events, handlers, environments."""
    from stacks import wiring

    notifications = _resources(template, "Custom::S3BucketNotifications")
    (config,) = [n["Properties"]["NotificationConfiguration"] for n in notifications.values()]
    assert sorted(e for q in config["QueueConfigurations"] for e in q["Events"]) == sorted(
        wiring.NOTIFICATION_EVENTS.values()
    )
    handlers = {
        f["Properties"]["Handler"]: f["Properties"]
        for f in _resources(template, "AWS::Lambda::Function").values()
    }
    for spec in (wiring.INGEST, wiring.QUERY, wiring.COMPACT):
        env = handlers[spec.handler]["Environment"]["Variables"]
        assert ("MODEL_DIR" in env) == spec.with_model
        assert set(wiring.COMMON_ENVIRONMENT) <= set(env)


def test_api_gateway_answers_its_own_errors_in_the_api_error_shape(template: Template) -> None:
    """Bad key, unknown route, too large, throttled, timeouts: Gateway Responses with JSON error bodies."""
    from stacks import wiring

    api = next(iter(_resources(template, "AWS::ApiGateway::RestApi")))
    template.resource_count_is("AWS::ApiGateway::GatewayResponse", len(wiring.GATEWAY_RESPONSES))
    expected = {
        "INVALID_API_KEY": ("403", "forbidden"),
        "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found"),  # an unknown route or method is a 404
        "REQUEST_TOO_LARGE": ("413", "too_large"),
        "THROTTLED": ("429", "throttled"),
        "QUOTA_EXCEEDED": ("429", "quota_exceeded"),
        "INTEGRATION_FAILURE": ("502", "bad_gateway"),
        "INTEGRATION_TIMEOUT": ("504", "timeout"),
        "DEFAULT_4XX": (None, "bad_request"),
        "DEFAULT_5XX": (None, "gateway_error"),
    }
    for response_type, (status, code) in expected.items():
        assert json.loads(wiring.gateway_response(response_type).body)["error"]["code"] == code
        template.has_resource_properties(
            "AWS::ApiGateway::GatewayResponse",
            {
                "ResponseType": response_type,
                "RestApiId": {"Ref": api},
                "StatusCode": status if status is not None else Match.absent(),
                "ResponseTemplates": {"application/json": wiring.gateway_response(response_type).body},
            },
        )
    for response in _resources(template, "AWS::ApiGateway::GatewayResponse").values():
        body = json.loads(response["Properties"]["ResponseTemplates"]["application/json"])
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
        assert body["error"]["message"] and "$" not in body["error"]["message"]


def test_gateway_answers_carry_cors_headers_only_with_cors_origins(synth, template: Template) -> None:
    """A page on an allowed origin must see a 403/429/413 as such, not as a CORS failure."""
    plain = _resources(template, "AWS::ApiGateway::GatewayResponse").values()
    assert all("ResponseParameters" not in r["Properties"] for r in plain)
    _, one = synth(corsOrigins=["https://photos.example.com"])
    for response in _resources(one, "AWS::ApiGateway::GatewayResponse").values():
        headers = response["Properties"]["ResponseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "'https://photos.example.com'"
        assert headers["gatewayresponse.header.Vary"] == "'Origin'"
    _, several = synth(corsOrigins=["https://a.example.com", "https://b.example.com"])
    for response in _resources(several, "AWS::ApiGateway::GatewayResponse").values():
        allow = response["Properties"]["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
        assert allow == "method.request.header.Origin"  # a Gateway Response cannot choose among several


def test_the_local_api_answers_from_the_same_gateway_table() -> None:
    """imgsearch/local/api.py sends the body and status the CDK stack configures, for the same response type."""
    from imgsearch.local.api import LocalApi
    from stacks import wiring

    api = LocalApi(
        handler=lambda event, context: {},
        api_key="key",
        routes=wiring.ROUTES,
        binary_media_types=wiring.BINARY_MEDIA_TYPES,
        port=0,
        log=lambda line: None,
    )
    try:
        for response in wiring.GATEWAY_RESPONSES:
            status, headers, body = api.gateway(response.type)
            assert json.loads(body) == json.loads(response.body)
            assert status == (response.status or 400)
            assert ("Content-Type", "application/json") in headers
        assert api.respond("GET", "/nowhere", [], b"", "127.0.0.1")[0] == 404
        assert api.respond("GET", "/health", [("x-api-key", "wrong")], b"", "127.0.0.1")[0] == 403
    finally:
        api.server.server_close()


def test_the_lifecycle_rule_expires_the_tag_the_core_store_puts_on_retired_objects(template: Template) -> None:
    from imgsearch.store import RETIRED_TAG

    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with([Match.object_like({"TagFilters": [RETIRED_TAG]})])
            }
        },
    )


def test_the_gateway_passes_every_query_parameter_the_api_takes() -> None:
    from imgsearch.options import QUERY_PARAMETERS
    from stacks.wiring import ROUTES, SEARCH_PARAMETERS

    assert set(SEARCH_PARAMETERS) == set(QUERY_PARAMETERS)
    assert ("GET", "/search", True) in ROUTES
