"""Flags shared by the deploy commands, declared once (each command declares its own rest).

A flag name used by two commands lives here even when its default differs per command (the
command applies its own default to an empty value): absl refuses a second declaration, so two
command modules declaring ``--machine_type`` could never be imported into one process.
"""

from absl import flags

PROJECT = flags.DEFINE_string("project", None, "Google Cloud project ID.")
REGION = flags.DEFINE_string("region", None, "Vertex AI region, e.g. us-central1.")
DRY_RUN = flags.DEFINE_bool(
    "dry_run", False,
    "Print the exact request(s) as JSON and exit: no credentials, no network.")
MACHINE_TYPE = flags.DEFINE_string(
    "machine_type", "", "Machine of each replica: training (default n1-standard-8) or serving "
    "(default n1-standard-4).")
ACCELERATOR_TYPE = flags.DEFINE_string(
    "accelerator_type", "", "e.g. NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_A100, TPU_V3; empty "
    "for CPU or for machines with built-in accelerators (a2-*, g2-*, ct5lp-*).")
ACCELERATOR_COUNT = flags.DEFINE_integer(
    "accelerator_count", 0, "Accelerators per replica (0 = what the machine type implies).")
SERVICE_ACCOUNT = flags.DEFINE_string(
    "service_account", "", "Service account the training job, or the served model, runs as.")
