"""Beam preprocessing: labelled face images -> validated, deduplicated, split, sharded TFRecords."""
