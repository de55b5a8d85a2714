"""preprocessing.stats_assembly: stats.json from per-shard summaries (pure, no pipeline)."""

import json

from contract import schema
from contract.framing import Framing
from imaging.images import ImageConfig
from preprocessing import options, stats_assembly


def test_stats_add_up_shards_and_account_for_every_input(tmp_path):
    config = options.JobConfig(images="in", output_dir="out", max_age=3.0,
                               image=ImageConfig(Framing(image_size=64, resize="pad", margin=0.1)))
    shards = [  # out of order, as Beam hands them over
        stats_assembly.shard_summary("train", 1, 2, [1.5, 2.25], num_bytes=20, max_age=3.0),
        stats_assembly.shard_summary("train", 0, 2, [0.5], num_bytes=7, max_age=3.0),
        stats_assembly.shard_summary("test", 0, 1, [3.0], num_bytes=9, max_age=3.0),
    ]
    stats_assembly.write_stats_from_parts(
        None, directory=str(tmp_path), config=config, extra_columns=["gender"], shards=shards,
        reasons_=[("bad_age", 2), ("missing_file", 1)], merged=[1, 2],
        blur_deciles=[[float(q) for q in range(11)]])
    stats = json.loads((tmp_path / schema.STATS_FILE).read_text())
    train = stats["splits"]["train"]
    assert (train["count"], train["num_shards"], train["shard_lengths"], train["num_bytes"]) == (
        3, 2, [1, 2], 27)
    assert train["age_histogram"] == [1, 1, 1, 0]
    assert train["mean_age"] == (0.5 + 1.5 + 2.25) / 3  # exact, not the histogram's 1.0
    assert stats["splits"]["validation"]["count"] == 0
    assert stats["splits"]["validation"]["mean_age"] is None
    assert stats["rejects"] == {"bad_age": 2, "missing_file": 1}
    assert (stats["duplicates_merged"], stats["inputs"]) == (3, 4 + 3 + 3)
    assert stats["blur_quantiles"] == {"0.1": 1.0, "0.5": 5.0, "0.9": 9.0}
    # The geometry of the records, which serving has to reproduce.
    assert (stats["image_size"], stats["resize"], stats["margin"]) == (64, "pad", 0.1)
