"""Vertex AI training jobs, tuning, model upload and serving, Dataflow launch helpers."""
