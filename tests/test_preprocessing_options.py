"""preprocessing.options: bad flags fail before any work, naming the flag."""

import pytest

from preprocessing import options


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file_name,real_age,person\na.jpg,3,p1\n")
    return tmp_path


def _argv(inputs, *extra):
    return [f"--labels={inputs / 'labels.csv'}", f"--images={inputs / 'images'}",
            f"--output_dir={inputs / 'out'}", *extra]


def test_good_flags_give_a_frozen_config_and_beam_options(inputs):
    config, beam = options.parse(_argv(inputs, "--image_size=64", "--split_ratios=0.7,0.2,0.1",
                                       "--group_by=person", "--direct_num_workers=2"))
    assert config.image.framing.image_size == 64 and config.split_ratios == (0.7, 0.2, 0.1)
    assert config.group_by == "person"
    assert beam.get_all_options()["direct_num_workers"] == 2
    with pytest.raises(AttributeError):
        config.num_shards = 3


@pytest.mark.parametrize("extra, message", [
    (["--split_ratios=0.8,0.1,0.2"], "--split_ratios='0.8,0.1,0.2' sums to 1.1"),
    (["--split_ratios=0.8,0.2"], "--split_ratios"),
    (["--split_ratios=a,b,c"], "--split_ratios"),
    (["--image_size=2"], "--image_size=2"),
    (["--image_size=1025"], "--image_size=1025: expected an integer in 32..1024"),
    (["--max_pixels=0"], "--max_pixels=0"),
    (["--max_aspect_ratio=0.5"], "--max_aspect_ratio=0.5"),
    (["--margin=0.5"], "--margin=0.5"),
    (["--num_shards=-1"], "--num_shards=-1"),
    (["--group_by=age_group"], "--group_by='age_group': not a label column"),
    (["--image_szie=64"], "unknown flag(s): --image_szie"),
])
def test_bad_values_name_the_flag(inputs, extra, message):
    with pytest.raises(options.OptionsError, match=message.replace("(", r"\(").replace(
            ")", r"\)")):
        options.parse(_argv(inputs, *extra))


def test_missing_paths_name_the_flag(inputs):
    with pytest.raises(options.OptionsError, match="--images=.*no such folder"):
        options.parse(_argv(inputs)[:1] + [f"--images={inputs / 'nope'}",
                                           f"--output_dir={inputs / 'out'}"])
    with pytest.raises(options.OptionsError, match="--labels: .*nope.csv.* does not exist"):
        options.parse([f"--labels={inputs / 'nope.csv'}"] + _argv(inputs)[1:])
    (inputs / "empty.csv").write_text("")
    with pytest.raises(options.OptionsError, match="empty"):
        options.parse([f"--labels={inputs / 'empty.csv'}"] + _argv(inputs)[1:])
    with pytest.raises(options.OptionsError, match="not used with --label_format=utkface"):
        options.parse(_argv(inputs, "--label_format=utkface"))


def _dataflow(setup):
    return ["--runner=DataflowRunner", "--project=my-proj", "--region=europe-west4",
            "--temp_location=gs://my-bucket/tmp", f"--setup_file={setup}"]


GS = ["--labels=gs://my-bucket/l.csv", "--images=gs://my-bucket/img",
      "--output_dir=gs://my-bucket/out"]


def test_dataflow_needs_gs_paths_region_and_setup_file(inputs, tmp_path):
    setup = tmp_path / "setup.py"
    setup.write_text("")
    dataflow = _dataflow(setup)
    cases = [
        ([a for a in dataflow if not a.startswith("--region")], "--region is required"),
        ([a for a in dataflow if not a.startswith("--temp")] + ["--temp_location=/tmp"],
         "--temp_location='/tmp' must be a gs:// URI"),
        ([a for a in dataflow if not a.startswith("--setup")], "--setup_file=./setup.py is"),
        (dataflow[:-1] + ["--setup_file=/no/setup.py"], "no such file"),
    ]
    for flags, message in cases:
        with pytest.raises(options.OptionsError, match=message):
            options.parse(GS + flags)
    with pytest.raises(options.OptionsError,
                       match="--labels=.* must be a gs:// URI: Dataflow workers cannot read"):
        options.parse(_argv(inputs) + dataflow)


@pytest.mark.parametrize("extra, message", [
    (["--project=P"], "--project='P' is not a project ID"),
    (["--staging_location=staging"], "--staging_location='staging' must be a gs:// URI"),
    (["--job_name=Face_Age"], "--job_name='Face_Age'"),
    (["--save_main_session"], "--save_main_session: not needed"),
    (["--requirements_file=missing.txt"], "--requirements_file=missing.txt: no such file"),
    (["--max_num_workers=0"], "--max_num_workers=0: must be >= 1"),
])
def test_the_job_runs_every_dataflow_check_that_the_launcher_runs(tmp_path, extra, message):
    # One validator for both: preprocessing.run started by hand is checked like deploy.dataflow.
    setup = tmp_path / "setup.py"
    setup.write_text("")
    with pytest.raises(options.OptionsError, match=message):
        options.parse(GS + _dataflow(setup) + extra)


def test_the_command_line_exits_non_zero_naming_the_flag(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "preprocessing.run", f"--labels={tmp_path / 'l.csv'}",
         f"--images={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "preprocessing.run: error: --images=" in proc.stderr and "no such folder" in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before any work
