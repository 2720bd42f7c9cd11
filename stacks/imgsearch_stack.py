"""The deployable unit. Its constructs (storage, ingest, query API, compaction, monitoring) come with
the AWS deployment issue; until then the stack is empty."""

from aws_cdk import Stack
from constructs import Construct


class ImgSearchStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
