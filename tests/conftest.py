"""Shared test set-up: quiet TensorFlow, two logical CPU devices, deterministic seeds."""

import os

# Must be set before TensorFlow is first imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
