"""What the handlers share: configuration from the environment and S3 event parsing."""
