"""Learning-rate schedule: linear warm-up, then cosine decay to 0 (per training stage).

Warm-up keeps the first updates small while Adam's moment estimates (and, in the fine-tuning
stage, the freshly unfrozen backbone) settle; cosine decay then anneals smoothly without a
step-schedule's hand-picked boundaries.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="face_age")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0):
        if total_steps < 1 or warmup_steps < 0 or warmup_steps > total_steps:
            raise ValueError(f"schedule needs 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                             f"({total_steps}) and total_steps >= 1")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(
            warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        # Warm-up ramps to the peak over warmup_steps (step+1 so the very first update is not 0).
        warmup = self.peak * (step + 1.0) / warm
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def stage_schedule(peak: float, epochs: int, steps_per_epoch: int,
                   warmup_epochs: float) -> WarmupCosine:
    """Schedule for one stage; warm-up capped at half the stage so some decay always happens."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total // 2)
    return WarmupCosine(peak, total, warmup)
