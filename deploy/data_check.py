"""``submit_training --check_data``: will the job's workers find the data they need?

Reads DATA_DIR/stats.json (what preprocessing.run wrote next to the shards) and refuses a job
whose input pipelines could not each get shard files of every split they read, so that the job
fails here, before any machine is provisioned, and not at its first epoch.
"""

from __future__ import annotations

from contract import cloud, files, sharding
from contract import stats as stats_file
from deploy import specs
from preprocessing import split

# The splits every input pipeline reads (trainer.train.make_datasets): the test split is read
# by trainer.evaluate alone, on one machine.
PIPELINE_SPLITS = ("train", "validation")


def input_pipelines(job: specs.TrainingJob) -> int:
    """Input pipelines the trainer builds: one per worker of a multi-worker job, else one."""
    return job.replica_count if job.strategy == "multi_worker_mirrored" else 1


def problems(stats: stats_file.Stats, pipelines: int, stats_uri: str = "stats.json"
             ) -> list[str]:
    """What stops ``pipelines`` input pipelines from reading the data ``stats`` describes."""
    out = []
    for name in PIPELINE_SPLITS:
        entry = stats.split(name) or stats_file.SplitStats(0)
        count, shards = entry.count, entry.num_shards
        if shards is None:
            out.append(f"{stats_uri} records no shard count for {name!r} (an older "
                       "preprocessing.run): rerun preprocessing")
            continue
        shortfall = sharding.shard_shortfall(name, int(shards), pipelines)
        if shortfall is None:
            continue
        if count < pipelines:  # at most one shard per record, whatever --num_shards says
            fix = (f"the split has only {count} record(s), so at most {count} worker(s) can "
                   f"share it: use fewer replicas (--replica_count<={max(count, 1)}) or more data")
        else:
            fix = (f"rerun preprocessing.run with --num_shards={pipelines} or more (the "
                   f"automatic count now gives at least {split.MIN_AUTO_SHARDS} per split), or "
                   f"use --replica_count<={max(int(shards), 1)}")
        out.append(f"{shortfall}; {fix}")
    return out


def read_stats(data_dir: str) -> tuple[str, stats_file.Stats]:
    """(URI, DATA_DIR/stats.json); FileNotFoundError or ValueError naming the file."""
    uri = cloud.join(data_dir, stats_file.FILE)
    try:
        text = files.read_text(uri)
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri} not found: is the trainer's --data_dir the output_dir of "
                                "preprocessing.run?") from None
    return uri, stats_file.Stats.from_json(text, uri)


def check(job: specs.TrainingJob, data_dir: str) -> None:
    """Raises ValueError (or FileNotFoundError) naming the fix when the job cannot read its data."""
    uri, stats = read_stats(data_dir)
    found = problems(stats, input_pipelines(job), uri)
    if found:
        raise ValueError(f"{job.replica_count} worker(s) cannot each read the data in {data_dir}: "
                         + " | ".join(found))
