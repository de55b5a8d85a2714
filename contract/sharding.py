"""How a split's shard files are dealt to the trainer's input pipelines, and when that fails.

Each input pipeline (one per worker under MultiWorkerMirroredStrategy) reads whole files:
trainer.data shards the sorted file list round-robin before reading, so pipeline i gets files
i, i + n, i + 2n, ... A pipeline left without a file has nothing to read, and since every worker
runs the same collective steps the whole job stops. deploy.submit_training applies the same rule
to stats.json before a job is created; the trainer applies it to the files it finds.
"""

from __future__ import annotations


def files_of_pipeline(num_files: int, num_pipelines: int, pipeline_id: int) -> int:
    """Whole files pipeline ``pipeline_id`` of ``num_pipelines`` reads (round-robin deal)."""
    return len(range(pipeline_id, num_files, num_pipelines))


def shard_shortfall(split: str, num_files: int, num_pipelines: int) -> str | None:
    """Why ``num_files`` shards of ``split`` cannot feed ``num_pipelines`` pipelines, or None."""
    starved = sum(files_of_pipeline(num_files, num_pipelines, i) == 0
                  for i in range(num_pipelines))
    if not starved:
        return None
    return (f"{num_files} {split!r} shard(s) cannot feed {num_pipelines} input pipelines (one "
            f"per worker): each needs at least one whole file, and {starved} would get none")
