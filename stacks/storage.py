"""Storage: the images bucket (what users upload), the index (S3 bucket or EFS: segments + manifest), access logs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from .filesystem import IndexFileSystem
from .nag import suppress
from .wiring import EFS_MOUNT_PATH, index_uri

RETIRED_TAG = ("imgsearch-retired", "true")  # imgsearch.store.RETIRED_TAG: superseded index objects


class Storage(Construct):
    """The images bucket, and the index: on S3 (the index bucket) or on EFS (`index_store="efs"`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        versioned: bool,
        retired_grace_days: int,
        index_store: str = "s3",
    ) -> None:
        super().__init__(scope, construct_id)
        self.logs = self._private_bucket(
            "AccessLogs",
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
        )
        suppress(
            self.logs,
            {"AwsSolutions-S1": "This is the access-log bucket itself; logging it to itself would loop."},
        )
        self.images = self._private_bucket(
            "Images",
            versioned=versioned,
            server_access_logs_bucket=self.logs,
            server_access_logs_prefix="images/",
        )
        # On EFS there is no index bucket: the core LocalStore moves superseded objects to .retired/
        # and deletes them itself after its grace period, so no lifecycle rule is needed either.
        self.index: s3.Bucket | None = None
        self.file_system: IndexFileSystem | None = None
        if index_store == "efs":
            self.file_system = IndexFileSystem(self, "IndexFileSystem")
            return
        self.index = self._private_bucket(
            "Index",
            server_access_logs_bucket=self.logs,
            server_access_logs_prefix="index/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-retired-index-objects",
                    tag_filters={RETIRED_TAG[0]: RETIRED_TAG[1]},
                    expiration=Duration.days(retired_grace_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )

    def _private_bucket(self, construct_id: str, **settings: Any) -> s3.Bucket:
        """A bucket with the baseline every bucket here shares: private, encrypted, TLS only, retained."""
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
            **settings,
        )

    @property
    def index_uri(self) -> str:
        return EFS_MOUNT_PATH if self.index is None else index_uri(self.index.bucket_name)
