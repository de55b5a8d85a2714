"""Entry point: ``python -m trainer.task --data_dir=... --model_dir=... [flags]``.

Reads like a table of contents: flags -> config -> strategy -> environment -> train.run (data ->
model -> fit -> evaluate on validation -> export). All flags live in trainer/flags.py;
``--helpfull`` lists them. --batch_size is the GLOBAL batch.
"""

from __future__ import annotations

import json
import logging
import os
import platform

from absl import app

from trainer import config as config_lib
from trainer import flags as trainer_flags


def log_environment() -> None:
    import keras
    import tensorflow as tf

    logging.info("python %s, tensorflow %s, keras %s", platform.python_version(),
                 tf.__version__, keras.__version__)
    logging.info("devices: %s", [d.name for d in tf.config.list_logical_devices()])
    for var in ("TF_CONFIG", "AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR",
                "CLOUD_ML_TRIAL_ID"):
        if os.environ.get(var):
            logging.info("%s=%s", var, os.environ[var])


def main(argv):
    del argv
    logging.getLogger().setLevel(logging.INFO)
    config = config_lib.from_flags(trainer_flags.FLAGS)
    from trainer import distribution, train  # after flag parsing: importing TF/Keras is slow

    # First TF call of the process: multi-worker collectives and TPUs must be configured before
    # anything (even listing devices) initialises the runtime.
    strategy = distribution.create_strategy(config.distribution_strategy, config.tpu)
    logging.info("config: %s", config.to_json(indent=None))  # one line
    log_environment()
    metrics = train.run(config, strategy)
    print(json.dumps(metrics))


if __name__ == "__main__":
    app.run(main)
