"""The local stack (`imgsearch local up`): the real event-driven system on a laptop, no AWS account.

moto's server (S3 + SQS, on 127.0.0.1) stands in for AWS; the unchanged Lambda handlers from the
repository's lambdas/ folder run on real SQS messages produced by real S3 notifications (workers.py)
and behind a local HTTP server that sends them API Gateway REST proxy events (api.py); stack.py wires
it all with the names in stacks/wiring.py, the same module the CDK stack reads.

Nothing here is imported by `import imgsearch`: moto, boto3 and Powertools load only for `local up`.
"""
