"""The index on Amazon S3 Vectors (context indexBackend=s3vectors): a vector bucket and one vector index.

Both are named by CloudFormation (no hard-coded names: a second stage fits in the same account) and
retained on stack deletion, like the segment index bucket. The index takes the model's raw embeddings,
L2-normalised: float32, cosine, `vectorDimension` values; etag, size, sequencer, time and model are
non-filterable metadata (imgsearch.s3vectors), which keeps the 2 KB filterable budget for the key
prefixes the query API filters on.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from .wiring import (
    VECTOR_DATA_TYPE,
    VECTOR_DISTANCE_METRIC,
    VECTOR_INGEST_ACTIONS,
    VECTOR_NON_FILTERABLE_KEYS,
    VECTOR_QUERY_ACTIONS,
)


class VectorIndex(Construct):
    """A vector bucket (SSE-S3) and the image index in it."""

    def __init__(self, scope: Construct, construct_id: str, *, dimension: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3vectors.CfnVectorBucket(
            self,
            "Bucket",
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                sse_type="AES256"
            ),
        )
        self.bucket.apply_removal_policy(RemovalPolicy.RETAIN)
        self.index = s3vectors.CfnIndex(
            self,
            "Index",
            vector_bucket_arn=self.bucket.attr_vector_bucket_arn,
            data_type=VECTOR_DATA_TYPE,
            dimension=dimension,
            distance_metric=VECTOR_DISTANCE_METRIC,
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=list(VECTOR_NON_FILTERABLE_KEYS)
            ),
        )
        self.index.apply_removal_policy(RemovalPolicy.RETAIN)

    @property
    def index_arn(self) -> str:
        return self.index.attr_index_arn

    @property
    def bucket_arn(self) -> str:
        return self.bucket.attr_vector_bucket_arn

    def grant(self, grantee: iam.IGrantable, *, write: bool) -> None:
        """The index's vector operations only: ingest writes and reads back; the query function searches."""
        actions = VECTOR_INGEST_ACTIONS if write else VECTOR_QUERY_ACTIONS
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=[self.index_arn])
        )
