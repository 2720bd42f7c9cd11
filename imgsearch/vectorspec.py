"""What an imgsearch index on Amazon S3 Vectors is, fixed at its creation: read by the core
(imgsearch.s3vectors creates and checks the index) and by the CDK app (stacks/vectors.py creates it), so
this module imports nothing."""

DATA_TYPE = "float32"
METRIC = "cosine"
NON_FILTERABLE = ("etag", "size", "sequencer", "time", "model")  # declared at index creation (≤ 10)
