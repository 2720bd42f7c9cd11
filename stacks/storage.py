"""Storage: the images bucket (what users upload), the index (S3 bucket or EFS: segments + manifest; or an
S3 Vectors index, context indexBackend=s3vectors), access logs.

The images bucket is created here, or (context imagesBucket) an existing bucket is imported: then the
stack only adds notification entries to it and read grants on the functions' roles, nothing else.
What a function may do with the storage is granted here too (`grant_image_reads`, `grant_index_access`).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from imgsearch.store import RETIRED_TAG, THUMBNAIL_PREFIX  # superseded objects' tag; thumbnails

from .filesystem import IndexFileSystem
from .nag import suppress
from .vectors import VectorIndex
from .wiring import EFS_MOUNT_PATH, INDEX_PREFIX, index_uri


class Storage(Construct):
    """The images bucket (new, or an existing one imported), and the index: segments on S3 or on EFS
    (`index_store="efs"`), or an S3 Vectors index (`index_backend="s3vectors"`: no index bucket).

    `images_prefixes` are the key prefixes of the images bucket the stack indexes and may read (() is
    the whole bucket); `images_kms_key_arn` the customer KMS key an imported bucket encrypts them with.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        versioned: bool,
        retired_grace_days: int,
        index_store: str = "s3",
        images_bucket: str = "",
        images_prefixes: tuple[str, ...] = (),
        images_kms_key_arn: str = "",
        index_backend: str = "segments",
        vector_dimension: int = 1280,
    ) -> None:
        super().__init__(scope, construct_id)
        self.index_backend = index_backend
        self.logs: s3.Bucket | None = None
        self.images_imported = bool(images_bucket)
        self.images_prefixes = images_prefixes
        self.images_kms_key_arn = images_kms_key_arn
        # An imported bucket is only referred to: no policy, encryption, versioning, lifecycle or logging
        # of ours, and CloudFormation never deletes it (it is not a resource of the stack).
        self.images: s3.IBucket = (
            s3.Bucket.from_bucket_name(self, "Images", images_bucket)
            if images_bucket
            else self._private_bucket(
                "Images",
                versioned=versioned,
                server_access_logs_bucket=self._access_logs(),
                server_access_logs_prefix="images/",
            )
        )
        # On EFS there is no index bucket: the core LocalStore moves superseded objects to .retired/
        # and deletes them itself after its grace period, so no lifecycle rule is needed either.
        self.index: s3.Bucket | None = None
        self.file_system: IndexFileSystem | None = None
        self.vectors: VectorIndex | None = None
        # Thumbnails live beside an index on S3; an EFS or S3 Vectors index gets a bucket of its own for them
        # (the page loads them by presigned URL, which only S3 gives).
        self.thumbnails: s3.Bucket | None = None
        if index_backend == "s3vectors":
            self.vectors = VectorIndex(self, "VectorIndex", dimension=vector_dimension)
            self.thumbnails = self._thumbnails_bucket()
            return
        if index_store == "efs":
            self.file_system = IndexFileSystem(self, "IndexFileSystem")
            self.thumbnails = self._thumbnails_bucket()
            return
        self.index = self._private_bucket(
            "Index",
            server_access_logs_bucket=self._access_logs(),
            server_access_logs_prefix="index/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-retired-index-objects",
                    tag_filters={RETIRED_TAG["Key"]: RETIRED_TAG["Value"]},
                    expiration=Duration.days(retired_grace_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )

    def _access_logs(self) -> s3.Bucket:
        """The access-log bucket, made when the first bucket of ours that logs needs it."""
        if self.logs is None:
            self.logs = self._private_bucket(
                "AccessLogs",
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
                lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
            )
            suppress(
                self.logs,
                {"AwsSolutions-S1": "This is the access-log bucket itself; logging it to itself would loop."},
            )
        return self.logs

    def image_object_patterns(self) -> list[str]:
        """The object keys the functions may read, as IAM resource patterns: one per watched prefix."""
        return [f"{prefix}*" for prefix in self.images_prefixes] or ["*"]

    def nag_images_resource(self, pattern: str) -> str:
        """How cdk-nag names `images.arn_for_objects(pattern)` in a finding (for a suppression's applies_to)."""
        if self.images_imported:
            return f"Resource::arn:<AWS::Partition>:s3:::{self.images.bucket_name}/{pattern}"
        bucket = self.images.node.default_child
        return f"Resource::<{Stack.of(self).get_logical_id(bucket)}.Arn>/{pattern}"  # type: ignore[arg-type]

    def grant_image_reads(self, function: iam.IGrantable) -> None:
        """Read the watched images (and learn that one is gone). Never write or delete, on any images bucket.

        ListBucket (on the bucket: S3 checks it unconditioned to answer a missing key with 404, not 403)
        lets the ingest function skip an object deleted since its event instead of retrying it into the DLQ.
        """
        patterns = self.image_object_patterns()
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self.images.arn_for_objects(p) for p in patterns]
            )
        )
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.images.bucket_arn])
        )
        if self.images_kms_key_arn:  # SSE-KMS objects: decrypt through S3 only, with this one key
            function.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[self.images_kms_key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{Stack.of(self).region}.amazonaws.com"}},
                )
            )
        suppress(
            function,  # type: ignore[arg-type]
            {
                "AwsSolutions-IAM5": "Reads any image under the watched prefixes (or the whole images bucket when "
                "none are set): object keys are chosen by the users who upload them."
            },
            applies_to={"AwsSolutions-IAM5": [self.nag_images_resource(p) for p in patterns]},
        )

    def grant_index_access(self, function: iam.IGrantable, *, write: bool, tag: bool = False) -> None:
        """The index prefix only: read; write new objects (segments, manifest by CAS); tag superseded ones.

        On EFS nothing to do here: mounting the access point grants ClientMount/ClientWrite (filesystem.py).
        On S3 Vectors: the index's vector operations on its ARN (stacks/vectors.py).
        """
        if self.vectors is not None:
            self.vectors.grant(function, write=write)
            return
        if self.index is None:
            return
        actions = (
            ["s3:GetObject"]
            + (["s3:PutObject"] if write else [])
            + (["s3:PutObjectTagging", "s3:GetObjectTagging"] if tag else [])
        )
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.index.arn_for_objects(f"{INDEX_PREFIX}/*")])
        )
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.index.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{INDEX_PREFIX}/*"]}},
            )
        )
        index = Stack.of(self).get_logical_id(self.index.node.default_child)  # type: ignore[arg-type]
        suppress(
            function,  # type: ignore[arg-type]
            {
                "AwsSolutions-IAM5": "Segment objects get new random names under the index prefix; access is "
                "limited to it."
            },
            applies_to={"AwsSolutions-IAM5": [f"Resource::<{index}.Arn>/{INDEX_PREFIX}/*"]},
        )

    def _thumbnails_bucket(self) -> s3.Bucket:
        return self._private_bucket(
            "Thumbnails",
            server_access_logs_bucket=self._access_logs(),
            server_access_logs_prefix="thumbnails/",
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1))
            ],
        )

    @property
    def thumbnail_uri(self) -> str:
        """Where thumbnails are kept when not beside the index ("" : beside it, on the index bucket)."""
        return f"s3://{self.thumbnails.bucket_name}" if self.thumbnails is not None else ""

    def grant_thumbnails(self, function: iam.IGrantable, *, write: bool) -> None:
        """Thumbnails in their own bucket (EFS, S3 Vectors): write them (ingest) or read them (query, to presign).

        Beside an index on S3, grant_index_access covers them already.
        """
        if self.thumbnails is None:
            return
        pattern = f"{THUMBNAIL_PREFIX}*"
        function.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"] if write else ["s3:GetObject"],
                resources=[self.thumbnails.arn_for_objects(pattern)],
            )
        )
        bucket = Stack.of(self).get_logical_id(self.thumbnails.node.default_child)  # type: ignore[arg-type]
        suppress(
            function,  # type: ignore[arg-type]
            {"AwsSolutions-IAM5": "One thumbnail per image version, named by object id and ETag under thumbs/."},
            applies_to={"AwsSolutions-IAM5": [f"Resource::<{bucket}.Arn>/{pattern}"]},
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
        """Where the segment index lives ("" with an S3 Vectors index: see vector_index_arn)."""
        if self.vectors is not None:
            return ""
        return EFS_MOUNT_PATH if self.index is None else index_uri(self.index.bucket_name)

    @property
    def vector_index_arn(self) -> str:
        return self.vectors.index_arn if self.vectors is not None else ""
