"""Query API: REST API (API key, usage plan, throttling, binary media types, CORS) → query Lambda."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_logs as logs
from constructs import Construct

from .functions import Assets, python_function
from .nag import suppress
from .storage import Storage
from .wiring import (
    BINARY_MEDIA_TYPES,
    GATEWAY_RESPONSES,
    QUERY,
    SEARCH_PARAMETERS,
    gateway_cors_headers,
    query_environment,
)

QUERYSTRING = {f"method.request.querystring.{name}": False for name in SEARCH_PARAMETERS}


class QueryApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        assets: Assets,
        stage: str,
        memory_mb: int,
        timeout_seconds: int,
        default_metric: str,
        presign_seconds: int,
        rate_limit: int,
        burst_limit: int,
        quota_per_day: int,
        cors_origins: tuple[str, ...],
        watch_suffixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            assets=assets,
            file_system=storage.file_system,
            spec=QUERY,
            memory_mb=memory_mb,
            timeout_seconds=timeout_seconds,
            environment=query_environment(
                index_uri=storage.index_uri,
                images_bucket=storage.images.bucket_name,
                default_metric=default_metric,
                presign_seconds=presign_seconds,
                cors_origins=cors_origins,
                watch_prefixes=storage.images_prefixes,
                watch_suffixes=watch_suffixes,
                index_backend=storage.index_backend,
                vector_index_arn=storage.vector_index_arn,
                thumbnail_uri=storage.thumbnail_uri,
            ),
            description="imgsearch query: REST API → embed, search segments, presigned URLs",
        )
        storage.grant_image_reads(self.function)  # presigned GET URLs are signed with this role
        storage.grant_index_access(self.function, write=False)
        storage.grant_thumbnails(self.function, write=False)  # thumbnail URLs are presigned with this role

        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.access_logs = access_logs  # the monitoring construct counts 429s in it
        self.api = apigw.RestApi(
            self,
            "Api",
            description="imgsearch: find similar images",
            binary_media_types=list(BINARY_MEDIA_TYPES),
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=stage,
                throttling_rate_limit=rate_limit,
                throttling_burst_limit=burst_limit,
                tracing_enabled=True,
                logging_level=apigw.MethodLoggingLevel.INFO,
                data_trace_enabled=False,  # request bodies are images: keep them out of logs
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "X-Api-Key"],
            )
            if cors_origins
            else None,
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        # API Gateway's own answers (bad key, unknown route, too large, throttled, timeouts) in the API's
        # error shape, from the table the local API answers from too (stacks/wiring.py).
        # With corsOrigins they carry the CORS headers too, so a page on that origin sees the status.
        cors_headers = gateway_cors_headers(cors_origins) or None
        for response in GATEWAY_RESPONSES:
            self.api.add_gateway_response(
                response.type.title().replace("_", ""),
                type=apigw.ResponseType.of(response.type),
                status_code=str(response.status) if response.status is not None else None,
                response_headers=cors_headers,
                templates={"application/json": response.body},
            )
        validator = self.api.add_request_validator(
            "Requests", validate_request_parameters=True, validate_request_body=True
        )
        integration = apigw.LambdaIntegration(self.function, proxy=True)
        search = self.api.root.add_resource("search")
        search.add_method("POST", integration, request_validator=validator, request_parameters=QUERYSTRING)
        search.add_method(  # words alone: the gateway refuses a GET without q before the function runs
            "GET",
            integration,
            request_validator=validator,
            request_parameters={**QUERYSTRING, "method.request.querystring.q": True},
        )
        similar = self.api.root.add_resource("similar").add_resource("{key+}")
        similar.add_method(
            "GET",
            integration,
            request_validator=validator,
            request_parameters={**QUERYSTRING, "method.request.path.key": True},
        )
        self.api.root.add_resource("health").add_method("GET", integration, request_validator=validator)
        # GET /ping (wiring.ROUTES): public, for load balancers and uptime checks; it tells only up or not.
        self.api.root.add_resource("ping").add_method("GET", integration, api_key_required=False)
        # GET /openapi.json (wiring.ROUTES): the contract, public (it says what docs/openapi.yaml says).
        self.api.root.add_resource("openapi.json").add_method("GET", integration, api_key_required=False)
        # The search page (wiring.ROUTES): public like any web page; it asks for the key, which the API checks.
        self.api.root.add_method("GET", integration, api_key_required=False)

        self.key = self.api.add_api_key(
            "Key", description="imgsearch API key (fetch its value with the CLI: docs/DEPLOY.md)"
        )
        plan = self.api.add_usage_plan(
            "UsagePlan",
            throttle=apigw.ThrottleSettings(rate_limit=rate_limit, burst_limit=burst_limit),
            quota=apigw.QuotaSettings(limit=quota_per_day, period=apigw.Period.DAY),
        )
        plan.add_api_key(self.key)
        plan.add_api_stage(stage=self.api.deployment_stage)

        reason_auth = "Callers authenticate with an API key + usage plan (throttled, quota); no end-user identities exist."
        suppress(
            self.api,
            {
                "AwsSolutions-APIG3": "No WAF by default: API key, usage-plan throttling and quotas bound the traffic; "
                "attach a WebACL per stage if the API is exposed widely.",
                "AwsSolutions-APIG4": reason_auth,
                "AwsSolutions-COG4": reason_auth,
                "AwsSolutions-IAM4": "API Gateway's account CloudWatch role uses the AWS managed push-to-logs policy.",
            },
            applies_to={
                "AwsSolutions-IAM4": [
                    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                ]
            },
        )
