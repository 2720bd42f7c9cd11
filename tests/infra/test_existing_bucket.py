"""imagesBucket: deploy onto an existing bucket, which the stack imports, notifies from and only reads.

Both modes side by side: a bucket the stack creates (the default) and an existing one with watched
prefixes and suffixes.
"""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

BUCKET = "example-bucket"
PREFIXES = ("photos/", "scans/")
SUFFIXES = (".jpg", ".png")
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
HANDLERS = {name: f"lambdas.{name}.handler.handler" for name in ("ingest", "query", "compact")}
EXISTING = {"imagesBucket": BUCKET, "watchPrefixes": ",".join(PREFIXES), "watchSuffixes": list(SUFFIXES)}


@pytest.fixture(scope="module")
def existing(synth) -> Template:
    return synth(**EXISTING)[1]


@pytest.fixture(scope="module")
def created(synth) -> Template:
    return synth()[1]


def _bucket_arn(suffix: str = "") -> dict:
    """How the template spells the ARN of the imported bucket (or of a key pattern in it)."""
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{BUCKET}{suffix}"]]}


def _notifications(template: Template) -> dict:
    (resource,) = template.find_resources("Custom::S3BucketNotifications").values()
    return resource


def _role_statements(template: Template) -> dict[str, list[dict]]:
    """Each function's IAM statements, by function name (ingest, query, compact)."""
    functions = template.find_resources("AWS::Lambda::Function")
    roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0]: name
        for name, handler in HANDLERS.items()
        for f in functions.values()
        if f["Properties"].get("Handler") == handler
    }
    statements: dict[str, list[dict]] = {name: [] for name in HANDLERS}
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            if role["Ref"] in roles:
                statements[roles[role["Ref"]]] += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _grants_on(statements: list[dict], bucket_text: str) -> set[tuple[str, str]]:
    """(action, resource) pairs of the statements whose resource names `bucket_text`."""
    grants = set()
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            if bucket_text in json.dumps(resource):
                grants |= {(action, json.dumps(resource, sort_keys=True)) for action in actions}
    return grants


def _environment(template: Template, function: str) -> dict[str, str]:
    (props,) = [
        f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == HANDLERS[function]
    ]
    return props["Environment"]["Variables"]


# --- GIVEN an existing bucket ------------------------------------------------------------------------


def test_an_existing_bucket_is_imported_not_created(existing: Template) -> None:
    buckets = existing.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # the index and its access logs: no images bucket
    assert BUCKET not in json.dumps(buckets)
    for bucket in buckets.values():  # neither is the images bucket (which logs under images/)
        assert bucket["Properties"].get("LoggingConfiguration", {}).get("LogFilePrefix") != "images/"
    # nothing sets a policy, encryption, versioning, lifecycle or logging on it, nor deletes it
    assert BUCKET not in json.dumps(existing.find_resources("AWS::S3::BucketPolicy"))
    resources = existing.to_json()["Resources"].values()
    kinds = {r["Type"] for r in resources if BUCKET in json.dumps(r.get("Properties"))}
    assert kinds == {
        "Custom::S3BucketNotifications",
        "AWS::IAM::Policy",
        "AWS::SQS::QueuePolicy",
        "AWS::Lambda::Function",
    }


def test_an_existing_bucket_with_the_index_on_efs_makes_only_the_thumbnails_bucket_and_its_log(synth) -> None:
    _, template = synth(imagesBucket=BUCKET, indexStore="efs")
    buckets = template.find_resources("AWS::S3::Bucket")  # no images, no index bucket
    assert sorted(name.removeprefix("Storage")[:10] for name in buckets) == ["AccessLogs", "Thumbnails"]
    template.resource_count_is("AWS::S3::BucketPolicy", 2)  # TLS only, on those two


def test_existing_bucket_notifications_are_unmanaged_and_one_per_prefix_suffix_and_event(
    existing: Template,
) -> None:
    """Managed false: CDK's handler merges these entries into the bucket's own and removes only these."""
    (queue,) = [
        n for n, q in existing.find_resources("AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]
    ]
    properties = _notifications(existing)["Properties"]
    assert properties["BucketName"] == BUCKET
    assert properties["Managed"] is False
    expected = [
        {
            "Events": [event],
            "Filter": {
                "Key": {
                    "FilterRules": [{"Name": "suffix", "Value": suffix}, {"Name": "prefix", "Value": prefix}]
                }
            },
            "QueueArn": {"Fn::GetAtt": [queue, "Arn"]},
        }
        for prefix in PREFIXES
        for suffix in SUFFIXES
        for event in ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
    ]
    assert properties["NotificationConfiguration"] == {"QueueConfigurations": expected}


def test_the_notification_handler_may_only_read_and_put_the_existing_buckets_notifications(
    existing: Template,
) -> None:
    handler = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for n, p in existing.find_resources("AWS::IAM::Policy").items()
        if n.startswith("StorageImagesNotificationsHandlerPolicy")
    ]
    assert handler == [
        [
            {
                "Action": ["s3:GetBucketNotification", "s3:PutBucketNotification"],
                "Effect": "Allow",
                "Resource": _bucket_arn(),
            }
        ]
    ]


def test_only_the_existing_bucket_may_send_to_the_ingest_queue(existing: Template) -> None:
    existing.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": Match.array_with(["sqs:SendMessage"]),
                                "Principal": {"Service": "s3.amazonaws.com"},
                                "Condition": {"ArnLike": {"aws:SourceArn": _bucket_arn()}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_ingest_and_query_may_only_read_the_watched_prefixes_of_the_existing_bucket(
    existing: Template,
) -> None:
    statements = _role_statements(existing)
    expected = {("s3:GetObject", json.dumps(_bucket_arn(f"/{p}*"), sort_keys=True)) for p in PREFIXES} | {
        ("s3:ListBucket", json.dumps(_bucket_arn(), sort_keys=True))
    }
    for function in ("ingest", "query"):
        assert _grants_on(statements[function], f":s3:::{BUCKET}") == expected, function
    assert _grants_on(statements["compact"], f":s3:::{BUCKET}") == set()


def test_no_role_may_write_delete_or_reconfigure_the_existing_bucket(existing: Template) -> None:
    everything = [
        s
        for policy in existing.find_resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {action for action, _ in _grants_on(everything, f":s3:::{BUCKET}")}
    assert actions == {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:GetBucketNotification",
        "s3:PutBucketNotification",
    }
    assert not {a for a in actions if a.startswith(("s3:Put", "s3:Delete"))} - {"s3:PutBucketNotification"}


def test_no_kms_grant_unless_the_bucket_key_is_given(existing: Template) -> None:
    assert "kms:" not in json.dumps(existing.find_resources("AWS::IAM::Policy"))


def test_a_customer_kms_key_is_decryptable_through_s3_by_ingest_and_query_only(synth) -> None:
    _, template = synth(**EXISTING, imagesBucketKmsKeyArn=KMS_KEY)
    decrypt = {
        "Action": "kms:Decrypt",
        "Condition": {
            "StringEquals": {
                "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
            }
        },
        "Effect": "Allow",
        "Resource": KMS_KEY,
    }
    statements = _role_statements(template)
    for function in ("ingest", "query"):
        assert [s for s in statements[function] if "kms:" in json.dumps(s)] == [decrypt], function
    assert not [s for s in statements["compact"] if "kms:" in json.dumps(s)]


def test_the_functions_learn_the_existing_bucket_and_the_watched_keys(existing: Template) -> None:
    for function in ("ingest", "query"):
        env = _environment(existing, function)
        assert env["WATCH_PREFIXES"] == "photos/,scans/" and env["WATCH_SUFFIXES"] == ".jpg,.png", function
    assert _environment(existing, "query")["IMAGES_BUCKET"] == BUCKET


def test_outputs_name_the_existing_bucket(existing: Template) -> None:
    outputs = existing.find_outputs("*")
    assert outputs["ImagesBucketName"]["Value"] == BUCKET
    assert {"IndexBucketName", "ApiUrl", "ApiKeyId", "IngestQueueUrl", "DeadLetterQueueUrl"} <= set(outputs)


# --- GIVEN a bucket the stack creates (the default) -------------------------------------------------------


def _images_bucket(template: Template) -> str:
    (name,) = [
        n
        for n, b in template.find_resources("AWS::S3::Bucket").items()
        if b["Properties"].get("LoggingConfiguration", {}).get("LogFilePrefix") == "images/"
    ]
    return name


def test_a_created_bucket_is_managed_by_the_notification_resource(created: Template) -> None:
    properties = _notifications(created)["Properties"]
    assert properties["BucketName"] == {"Ref": _images_bucket(created)}
    assert properties["Managed"] is True
    assert [q.get("Filter") for q in properties["NotificationConfiguration"]["QueueConfigurations"]] == [
        None,
        None,
    ]


def test_a_created_bucket_is_readable_whole_by_ingest_and_query(created: Template) -> None:
    images = _images_bucket(created)
    arn = {"Fn::GetAtt": [images, "Arn"]}
    expected = {
        ("s3:GetObject", json.dumps({"Fn::Join": ["", [arn, "/*"]]}, sort_keys=True)),
        ("s3:ListBucket", json.dumps(arn, sort_keys=True)),
    }
    statements = _role_statements(created)
    for function in ("ingest", "query"):
        assert _grants_on(statements[function], images) == expected, function
    assert _environment(created, "query")["WATCH_PREFIXES"] == ""


def test_watched_prefixes_on_a_created_bucket_filter_notifications_and_scope_reads(synth) -> None:
    _, template = synth(watchPrefixes="photos/,scans/")
    images = _images_bucket(template)
    rules = [
        q["Filter"]["Key"]["FilterRules"]
        for q in _notifications(template)["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    ]
    assert rules == [[{"Name": "prefix", "Value": p}] for p in PREFIXES for _ in range(2)]
    gets = {r for a, r in _grants_on(_role_statements(template)["ingest"], images) if a == "s3:GetObject"}
    assert gets == {
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [images, "Arn"]}, f"/{p}*"]]}, sort_keys=True)
        for p in PREFIXES
    }


def test_notification_prefix_and_suffix_are_one_watched_prefix_and_suffix(synth) -> None:
    """The older keys keep working: notificationPrefix=X is watchPrefixes=X (and the same for suffixes)."""
    _, old = synth(notificationPrefix="uploads/", notificationSuffix=".jpg")
    _, new = synth(watchPrefixes="uploads/", watchSuffixes=".jpg")
    assert _notifications(old)["Properties"] == _notifications(new)["Properties"]
    assert _environment(old, "ingest")["WATCH_PREFIXES"] == "uploads/"
