"""Infrastructure: one Stack composing one Construct per concern (storage, ingest, query, compaction)."""
