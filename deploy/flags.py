"""Flags shared by the deploy commands, declared once (each command declares its own rest)."""

from absl import flags

PROJECT = flags.DEFINE_string("project", None, "Google Cloud project ID.")
REGION = flags.DEFINE_string("region", None, "Vertex AI region, e.g. us-central1.")
DRY_RUN = flags.DEFINE_bool(
    "dry_run", False,
    "Print the exact request(s) as JSON and exit: no credentials, no network.")
