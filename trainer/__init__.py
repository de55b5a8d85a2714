"""Age-estimation trainer, evaluation and export under tf.distribute."""
