"""contract.files on local paths (gs:// is in test_deploy_gcs.py, on the emulator)."""

import os
import subprocess
import sys

import pytest

from contract import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_write_text_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "history.json")
    files.write_text(path, "[1, 2, 3]\n")
    files.write_text(path, "[1]\n")
    assert files.read_json(path) == [1]
    assert os.listdir(tmp_path) == ["history.json"]


def test_read_json_default_only_for_a_missing_file(tmp_path):
    assert files.read_json(str(tmp_path / "none.json"), {"epoch": -1}) == {"epoch": -1}
    with pytest.raises(FileNotFoundError, match="none.json"):
        files.read_json(str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError):
        files.read_json(str(tmp_path / "bad.json"), {})


def test_write_bytes_makes_parent_folders_and_copy_tree_keeps_the_tree(tmp_path):
    assert files.write_bytes(str(tmp_path / "a" / "b" / "x.bin"), b"xyz") == 3
    assert files.exists(str(tmp_path / "a")) and not files.exists(str(tmp_path / "c"))
    copied = files.copy_tree(str(tmp_path / "a"), str(tmp_path / "copy"))
    assert copied == [str(tmp_path / "copy" / "b" / "x.bin")]
    assert files.read_bytes(copied[0]) == b"xyz"
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        files.copy_tree(str(tmp_path / "nope"), str(tmp_path / "copy2"))


def test_join_keeps_gs_uris_and_names_as_written():
    assert files.join("gs://b/out/", "errors", "e.jsonl") == "gs://b/out/errors/e.jsonl"
    assert files.join("/data", "x.jpg") == "/data/x.jpg"
    assert files.join("/data", "../x.jpg") == "/data/../x.jpg"  # inputs.py refuses it later


def test_local_io_imports_neither_tensorflow_nor_beam(tmp_path):
    # report, plots and the trainer's small files go through here on a laptop.
    code = ("import sys; from contract import files; p = sys.argv[1] + '/m.json'; "
            "files.write_text(p, '{}'); files.read_json(p); files.exists(p); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'apache_beam'}))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.stdout.strip() == "[]"
