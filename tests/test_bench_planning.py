"""The time-budget planning of the quality and ablation benchmarks, on figures worked by hand."""

from bench import ablation, quality

# A calibration history as the trainer writes it: epoch 1 traces, epoch 2 is the steady cost.
HISTORY = [{"seconds": 100.0, "train_seconds": 78.0}, {"seconds": 40.0, "train_seconds": 30.0}]


def test_costs_split_steps_from_per_epoch_and_one_off_costs():
    info = quality.costs(HISTORY, steps=60, spent=200.0)
    assert info == {"calibration_seconds": 200.0, "seconds_per_step": 0.5,
                    "seconds_per_epoch_overhead": 10.0, "first_epoch_extra_seconds": 60.0,
                    "fixed_seconds": 60.0}


def test_epochs_fit_the_budget_with_calibration_and_one_off_costs():
    info = quality.costs(HISTORY, steps=60, spent=200.0)
    # An epoch of 250 steps: 125 s + 10 s. Left of 3000 s: 3000 - 200 - 60 - 60 - export.
    epochs, epoch_s = quality.epochs_in_budget(3000.0, 250, info)
    assert epoch_s == 135.0
    assert epochs == int((3000 - 200 - 60 - 60 - quality.EXPORT_SECONDS) // 135)
    assert quality.epochs_in_budget(100.0, 250, info)[0] == 1  # never zero epochs


def test_ablation_steps_fill_the_budget_across_its_epochs():
    info = quality.costs(HISTORY, steps=60, spent=200.0)
    steps = ablation.plan_steps(ablation.EPOCHS * 100.0 + 60.0, info)
    assert steps == 180  # (100 s per epoch - 10 s of validation) / 0.5 s per step


def test_with_flags_keeps_one_value_per_flag():
    recipe = quality.with_flags(("--a=1", "--cache", "--b=2"), "--b=3", "--c=4")
    assert recipe == ("--a=1", "--cache", "--b=3", "--c=4")
    assert quality.batch_size(quality.with_flags(quality.RECIPE, "--batch_size=32")) == 32
