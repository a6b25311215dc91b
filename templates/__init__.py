"""Dataflow Flex Templates: one folder per pipeline (metadata.json, Dockerfile, requirements, launcher)."""
