"""Every flag of ``python -m trainer.task``, declared once. Defaults come from ``config.Config``.

Nothing but ``trainer.task`` imports this module: the library functions take a ``Config``.
"""

from absl import flags

from trainer import config

_D = config.defaults()


def _str(name, help_text):
    flags.DEFINE_string(name, _D.get(name), help_text)


def _enum(name, values, help_text):
    flags.DEFINE_enum(name, _D[name], list(values), help_text)


def _int(name, help_text):
    flags.DEFINE_integer(name, _D[name], help_text)


def _float(name, help_text):
    flags.DEFINE_float(name, _D[name], help_text)


def _bool(name, help_text):
    flags.DEFINE_bool(name, _D[name], help_text)


# Data and outputs.
_str("data_dir", "Output directory of preprocessing.run (local or gs://): shards + stats.json.")
_str("model_dir", "Where config.json, history.csv, metrics.json and saved_model/ go. Default: "
                  "$AIP_MODEL_DIR.")
_str("checkpoint_dir", "Backup checkpoints for resume and the best weights. Default: "
                       "$AIP_CHECKPOINT_DIR, else MODEL_DIR/checkpoints.")
_str("tensorboard_dir", "TensorBoard logs. Default: $AIP_TENSORBOARD_LOG_DIR, else "
                        "MODEL_DIR/tensorboard.")
_int("image_size", "Model input side in pixels; 0 = the size preprocessing wrote (stats.json).")
_enum("augment", config.AUGMENTS, "Training augmentation: default (flip, small shift/zoom/"
                                  "rotation, colour jitter) or none.")
_bool("cache", "Cache the encoded training/validation records in memory.")
_int("shuffle_buffer", "Record shuffle buffer (per input pipeline).")
_int("seed", "Seed for shuffling, augmentation and initialisation.")
_bool("deterministic", "Fixed element order and op determinism (reproducible, slower).")
_bool("export", "Export MODEL_DIR/saved_model after training.")
_enum("photo_signature", config.PHOTO_SIGNATURES,
      "detect|align: the export also gets predict_photo (whole-photo bytes -> every face's "
      "box, landmarks, score and age; MTCNN in the graph, needs the [faces] extra), cropping "
      "faces at the detector's box or aligned onto the aligned-crop template.")

# Model.
_enum("backbone", config.BACKBONES, "Backbone network; tiny is a test-sized CNN.")
_str("weights", "imagenet | none | PATH to a Keras weights file (local or gs://) for the "
                "backbone (without its top).")
_enum("head", config.HEADS, "regression: one linear output; dex: softmax over integer ages "
                            "0..max_age, prediction = expected value.")
_int("max_age", "Oldest age; dex classes are 0..max_age and predictions are clamped to "
                "[0, max_age] at export. 0 = stats.json max_age.")
_float("dex_sigma", "dex: std (years) of the Gaussian label distribution (DLDL); 0 = one-hot.")
_float("dropout", "Dropout before the head.")
_float("bn_momentum", "BatchNorm moving-average momentum for every backbone BN layer "
                      "(Keras MobileNetV3 ships 0.999, which lags badly on short runs; "
                      "--bn_recalibration_batches replaces the average before validation).")
_int("bn_recalibration_batches", "Precise BN: after each epoch's training and before its "
                                 "validation, set every training BatchNorm layer's moving "
                                 "mean/variance to the average over this many un-augmented "
                                 "training batches (at most one pass over train). 0 = off.")
_bool("train_bn", "In the fine-tuning stage, unfrozen BatchNorm layers update their statistics "
                  "(false: they stay in inference mode, as during the head stage).")

# Loss and imbalance.
_enum("loss", ("auto", *config.LOSSES["regression"], *config.LOSSES["dex"]),
      "auto = mae (regression) / kl (dex). regression: mae|huber|mse; dex: kl|ce.")
_float("huber_delta", "Huber loss delta in years.")
_enum("sample_weighting", config.WEIGHTINGS, "Per-example weights from the train age "
                                             "histogram: none, inverse_frequency or lds "
                                             "(label-distribution smoothing, Yang et al. 2021).")
_float("lds_sigma", "LDS Gaussian kernel std in years.")
_int("lds_kernel_size", "LDS kernel size in years (odd).")
_float("max_weight_ratio", "Clip weights so the rarest age weighs at most this many times the "
                           "commonest.")

# Optimisation.
_int("batch_size", "GLOBAL batch size: summed over all replicas of all workers (per-replica "
                   "batch = batch_size / number of replicas).")
_int("epochs", "Total epochs, both stages.")
_int("freeze_epochs", "The first epochs train the head only (backbone frozen, BN in inference "
                      "mode) at --head_learning_rate.")
_int("steps_per_epoch", "0 = floor(train examples / batch_size).")
_str("unfreeze", "Fine-tuning stage trains: all | last_block | K (the last K backbone layers).")
_enum("optimizer", config.OPTIMIZERS, "adamw or sgd (with momentum, nesterov).")
_float("head_learning_rate", "Peak learning rate of the head stage.")
_float("fine_tune_learning_rate", "Peak learning rate of the fine-tuning stage.")
_float("weight_decay", "Decoupled weight decay (adamw) / L2-style decay (sgd).")
_float("momentum", "SGD momentum.")
_float("ema_momentum", "Exponential moving average of the weights (Polyak averaging) with this "
                       "momentum, e.g. 0.99; precise BN, validation, the best weights and the "
                       "export use the average. 0 = off.")
_float("warmup_epochs", "Linear warm-up at the start of each stage (capped at half the stage), "
                        "then cosine decay to 0.")

# Performance and distribution.
_enum("dtype", config.DTYPES, "fp32, or mixed precision bf16/fp16 (the output layer stays fp32).")
_bool("enable_xla", "jit_compile the train step with XLA.")
_int("steps_per_execution", "Train steps per tf.function call (fewer Python round trips).")
_enum("distribution_strategy", config.STRATEGIES,
      "auto: tpu if --tpu, multi_worker_mirrored if TF_CONFIG names several tasks, mirrored if "
      "several GPUs, else one_device.")
_str("tpu", "TPU name or grpc:// address ('local' for a TPU VM).")
_str("hypertune_metric", "Metric reported to Vertex AI hyperparameter tuning each epoch.")
_int("verbose", "Keras progress display: 0 silent, 1 progress bar, 2 one line per epoch.")

FLAGS = flags.FLAGS
