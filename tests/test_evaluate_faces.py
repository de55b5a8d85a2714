"""trainer.evaluate on records cut from photos by preprocessing --face: the report's face counts
(stats.json "faces") and MAE by the detector's score (the records' face/score)."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from fixed_models import mean_colour_model
from PIL import Image

from contract import schema
from contract import stats as stats_file
from contract.framing import Framing
from trainer import evaluate, export, metrics, report

SIZE = 32
SCORES = [0.85, 0.95, 0.995, 0.9995, 0.9999, 0.9991]


def _jpeg(value):
    buf = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), value, np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _write_data(root, faces_entry):
    ages = [10.0 + 10 * i for i in range(len(SCORES))]
    with tf.io.TFRecordWriter(str(root / schema.shard_name("test", 0, 1))) as writer:
        for i, (age, score) in enumerate(zip(ages, SCORES, strict=True)):
            record = {schema.IMAGE: _jpeg(40 * i), schema.HEIGHT: SIZE, schema.WIDTH: SIZE,
                      schema.ORIGINAL_HEIGHT: 480, schema.ORIGINAL_WIDTH: 640,
                      schema.FILENAME: f"photo_{i}.jpg", schema.AGE: age, schema.ID: f"id{i}",
                      schema.BLUR: float(i), schema.BRIGHTNESS: 0.5,
                      schema.FACE_BOX: (10, 20, 110, 130), schema.FACE_LANDMARKS: [[1, 2]] * 5,
                      schema.FACE_SCORE: score}
            writer.write(schema.encode(record))
    hist = np.bincount(np.asarray(ages, int), minlength=121).tolist()
    stats = {"image_size": SIZE, "max_age": 120, "faces": faces_entry,
             "splits": {"test": {"count": len(ages), "num_shards": 1, "age_histogram": hist}}}
    (root / schema.STATS_FILE).write_text(json.dumps(stats))


def test_report_shows_face_counts_and_mae_by_detector_score(tmp_path):
    (tmp_path / "data").mkdir()
    _write_data(tmp_path / "data", {"mode": "detect", "multi_face": "largest", "no_face": 7,
                                    "multi_face_kept": 3, "multi_face_rejected": 0})
    export.export_saved_model(mean_colour_model(SIZE), str(tmp_path / "model" / "saved_model"),
                              Framing(SIZE), "regression", max_age=120)
    result = evaluate.evaluate(str(tmp_path / "model"), str(tmp_path / "data"), "test",
                               str(tmp_path / "out"))
    predictions = pd.read_csv(tmp_path / "out" / evaluate.PREDICTIONS_CSV)
    np.testing.assert_allclose(predictions["face_score"], SCORES, rtol=1e-6)
    bands = {row["group"]: row["count"] for row in result["by_face_score"]}
    assert bands == {"< 0.9": 1, "0.9-0.99": 1, "0.99-0.999": 1, ">= 0.999": 3}
    ours = result["by_face_score"][-1]
    errors = (predictions["predicted_age"] - predictions["true_age"]).abs()
    # predictions.csv holds 4 decimals
    assert ours["mae"] == pytest.approx(errors[predictions["face_score"] >= 0.999].mean(), abs=1e-3)
    markdown = (tmp_path / "out" / "report.md").read_text()
    faces_part = markdown.split("## Faces", 1)[1]
    assert "| detect | largest | 7 | 3 | 0 |" in faces_part
    assert "| >= 0.999 | 3 |" in faces_part


def test_no_faces_section_for_plain_records():
    plain = stats_file.Stats.from_dict({"splits": {"test": {"count": 1}}})
    assert report.face_sections(plain, {"by_face_score": []}) == []
    frame = pd.DataFrame({"true_age": [30.0], "predicted_age": [31.0]})
    assert "by_face_score" not in metrics.evaluation_metrics(frame)
