"""lab.config: the spec defaults, and every bad knob rejected with a message naming it."""

import pytest

from lab import config as C
from lab.server import policy as P


def test_spec_defaults():
    cfg = C.TrainConfig()
    assert cfg.batch_size == 512
    assert cfg.schedule.epochs == 24
    assert cfg.schedule.peak_epoch == 5
    assert cfg.optimizer.name == "adam"
    assert cfg.schedule.anneal == "linear"
    assert cfg.schedule.lr_min == pytest.approx(cfg.schedule.max_lr / 25)
    assert cfg.schedule.pct_start == pytest.approx(5 / 24)
    assert (cfg.augment.pad, cfg.augment.flip_p, cfg.augment.cutout, cfg.augment.cutout_p) == (4, 0.5, 8, 1.0)


def test_peak_epoch_keeps_the_spec_share_of_shorter_runs():
    assert C.ScheduleConfig(epochs=12).peak_epoch == pytest.approx(2.5)
    assert C.ScheduleConfig(epochs=12, peak_epoch=3).peak_epoch == 3


def test_min_lr_wins_over_div_factor():
    s = C.ScheduleConfig(max_lr=0.1, min_lr=0.02, div_factor=1000)
    assert s.lr_min == 0.02


def test_weight_decay_presets():
    assert C.OptimizerConfig("adam").decay == 0.0
    assert C.OptimizerConfig("sgd").decay == 5e-4
    assert C.OptimizerConfig("sgd", weight_decay=1e-3).decay == 1e-3


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: C.ScheduleConfig(epochs=0), "epochs"),
        (lambda: C.ScheduleConfig(epochs=2.5), "epochs"),
        (lambda: C.ScheduleConfig(epochs=5, peak_epoch=6), "peak epoch"),
        (lambda: C.ScheduleConfig(epochs=5, peak_epoch=5), "peak epoch"),
        (lambda: C.ScheduleConfig(epochs=5, peak_epoch=0), "peak epoch"),
        (lambda: C.ScheduleConfig(max_lr=0), "max LR"),
        (lambda: C.ScheduleConfig(max_lr=-0.1), "max LR"),
        (lambda: C.ScheduleConfig(max_lr=float("nan")), "max LR"),
        (lambda: C.ScheduleConfig(max_lr=float("inf")), "max LR"),
        (lambda: C.ScheduleConfig(max_lr=0.1, min_lr=-1e-3), "min LR"),
        (lambda: C.ScheduleConfig(max_lr=0.1, min_lr=0), "min LR"),
        (lambda: C.ScheduleConfig(max_lr=0.1, min_lr=0.1), "min LR"),
        (lambda: C.ScheduleConfig(max_lr=0.1, min_lr=0.2), "min LR"),
        (lambda: C.ScheduleConfig(div_factor=1), "div factor"),
        (lambda: C.ScheduleConfig(anneal="exp"), "anneal"),
        (lambda: C.ScheduleConfig(base_momentum=0.96), "momentum"),
        (lambda: C.ScheduleConfig(max_momentum=1.0), "momentum"),
        (lambda: C.TrainConfig(batch_size=0), "batch size"),
        (lambda: C.TrainConfig(batch_size=-8), "batch size"),
        (lambda: C.TrainConfig(width=0), "width"),
        (lambda: C.TrainConfig(width=5), "width"),
        (lambda: C.TrainConfig(subset=0), "subset"),
        (lambda: C.TrainConfig(test_subset=0), "test subset"),
        (lambda: C.TrainConfig(device="tpu"), "device"),
        (lambda: C.TrainConfig(loader="magic"), "loader"),
        (lambda: C.TrainConfig(label_smoothing=1.0), "label smoothing"),
        (lambda: C.TrainConfig(workers=-1), "workers"),
        (lambda: C.TrainConfig(low_res=7), "low-res side"),
        (lambda: C.TrainConfig(low_res=33), "low-res side"),
        (lambda: C.TrainConfig(low_res=20.5), "low-res side"),
        (lambda: C.TrainConfig(low_res_epochs=-1), "low-res epochs"),
        (lambda: C.TrainConfig(low_res_epochs=3, schedule=C.ScheduleConfig(epochs=3)), "last epoch at full size"),
        (lambda: C.OptimizerConfig("rmsprop"), "optimizer"),
        (lambda: C.OptimizerConfig("sgd", weight_decay=-1), "weight decay"),
        (lambda: C.AugmentConfig(pad=-1), "pad"),
        (lambda: C.AugmentConfig(cutout=33), "cutout"),
        (lambda: C.AugmentConfig(flip_p=1.5), "flip_p"),
        (lambda: C.AugmentConfig(cutout_p=-0.1), "cutout_p"),
    ],
)
def test_bad_values_are_rejected_by_name(make, words):
    with pytest.raises(C.ConfigError) as e:
        make()
    message = str(e.value)
    assert words in message
    assert "\n" not in message


def test_unknown_optimizer_message_lists_the_choices():
    with pytest.raises(C.ConfigError, match="adam, sgd"):
        C.OptimizerConfig("rmsprop")


def test_dict_round_trip():
    cfg = C.TrainConfig(
        batch_size=128, width=0.5, seed=3, subset=1000,
        augment=C.AugmentConfig(pad=2, cutout=0),
        schedule=C.ScheduleConfig(max_lr=0.2, min_lr=0.01, epochs=6, peak_epoch=2, anneal="cos"),
        optimizer=C.OptimizerConfig("sgd", weight_decay=1e-4),
    )
    assert C.TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(C.ConfigError, match="unknown config keys"):
        C.TrainConfig.from_dict({"batch_size": 64, "learning_rate": 1.0})


def test_flat_knobs_build_the_nested_config_and_round_trip():
    cfg = C.TrainConfig.from_flat(width=0.5, optimizer="sgd", pad=2, epochs=3, min_lr=1e-3, label_smoothing=0.1)
    assert (cfg.width, cfg.optimizer.name, cfg.augment.pad, cfg.schedule.epochs) == (0.5, "sgd", 2, 3)
    assert cfg.schedule.max_lr == C.default_max_lr("sgd")  # no max_lr given: the optimizer's own default
    assert cfg.schedule.lr_min == 1e-3 and cfg.label_smoothing == 0.1
    assert C.TrainConfig.from_flat(**cfg.flat()) == cfg
    assert C.TrainConfig.from_flat() == C.TrainConfig()
    with pytest.raises(C.ConfigError, match=r"unknown setting\(s\) \['lr'\]"):
        C.TrainConfig.from_flat(lr=0.1)


def test_presets_are_valid_configs_and_explicit_values_win():
    for name, preset in C.PRESETS.items():
        cfg = preset.config()
        assert preset.label and all(cfg.flat()[k] == v for k, v in preset.knobs.items() if k != "peak_epoch"), name
    assert C.PRESETS["spec"].config() == C.TrainConfig()  # the spec preset is the spec
    assert C.PRESETS["tiny"].config(width=0.5).width == 0.5
    assert P.CPU_PRESET in C.PRESETS and P.GPU_PRESET in C.PRESETS and P.CPU_SWEEP_PRESET in C.PRESETS


def test_progressive_resizing_sides_and_work():
    cfg = C.TrainConfig(low_res=16, low_res_epochs=2, schedule=C.ScheduleConfig(epochs=3))
    assert [cfg.image_side(e) for e in (1, 2, 3)] == [16, 16, C.IMAGE_SIDE]
    assert cfg.training_work() == pytest.approx(2 * (16 / 32) ** 2 + 1)
    off = C.TrainConfig(schedule=C.ScheduleConfig(epochs=3))
    assert off.low_res_epochs == 0 and [off.image_side(e) for e in (1, 2, 3)] == [32] * 3
    assert off.training_work() == 3
    assert C.TrainConfig.from_flat(low_res_epochs=1, epochs=2).flat()["low_res_epochs"] == 1


def test_learner_preset_is_the_cpu_default_and_trains_all_the_data_at_full_size_last():
    cfg = C.PRESETS[P.CPU_PRESET].config()
    assert P.CPU_PRESET == "learner" and cfg.subset is None and cfg.test_subset is None
    assert 0 < cfg.low_res_epochs < cfg.schedule.epochs and cfg.image_side(cfg.schedule.epochs) == C.IMAGE_SIDE


def test_page_preset_is_davids_recipe_beyond_the_spec():
    cfg = C.PRESETS["page"].config()
    assert (cfg.optimizer.name, cfg.optimizer.decay, cfg.optimizer.nesterov) == ("sgd", 5e-4, True)
    assert cfg.schedule.max_lr == 0.4 and cfg.schedule.lr_min < 1e-4 and not cfg.schedule.cycle_momentum
    assert cfg.logit_scale == 0.125 and "beyond the spec" in C.PRESETS["page"].label
    with pytest.raises(C.ConfigError, match="logit scale"):
        C.TrainConfig(logit_scale=0)


# ------------------------------------------------------------------------------------------- declared once

# The public names: the train_start API's parameters in order (scripts call it positionally) and the CLI's
# training flags. The declarations (lab.config.knob) generate both; these lists say what they must generate.
TRAIN_START_PARAMETERS = [
    "width", "subset", "test_subset", "seed", "device", "loader", "max_lr", "lr_mode", "div_factor", "min_lr",
    "epochs", "peak_epoch", "batch_size", "optimizer", "anneal", "cycle_momentum", "base_momentum", "max_momentum",
    "pad", "cutout", "cutout_p", "flip_p", "weight_decay", "label_smoothing", "logit_scale", "low_res_epochs",
    "low_res", "schedule"]
TRAIN_FLAGS = {
    "--max-lr", "--min-lr", "--div-factor", "--epochs", "--peak-epoch", "--anneal", "--no-cycle-momentum", "--schedule",
    "--batch-size", "--optimizer", "--preset", "--width", "--seed", "--subset", "--test-subset", "--device", "--loader",
    "--precision", "--data-dir", "--workers", "--label-smoothing", "--logit-scale", "--tta", "--pad", "--flip-p",
    "--cutout", "--cutout-p", "--weight-decay", "--low-res-epochs", "--low-res", "--compile", "--find-iters",
    "--find-start-lr", "--find-end-lr", "--find-mode", "--find-smooth-f", "--find-diverge-th", "--find-rule",
    "--run-dir", "--yes", "-h", "--help"}


def test_every_knob_is_declared_with_help_and_a_known_kind():
    for name, knob in C.KNOBS.items():
        assert knob.help and knob.help.strip(), name
        assert knob.value_kind in C.KINDS, name
        assert knob.cli in (None, *C.CLI_GROUPS), name
        if knob.value_kind == "choice":
            assert knob.default in knob.choices, name
    places = [k.app for k in C.KNOBS.values() if k.app is not None]
    assert len(places) == len(set(places)), "two knobs at one place among the app's controls"


def test_the_declarations_make_the_apps_parameters_and_the_clis_flags():
    import argparse

    from lab import cli
    from lab.ui.common import API_OPTIONAL, CONTROL_NAMES

    assert list(CONTROL_NAMES) == TRAIN_START_PARAMETERS
    assert API_OPTIONAL == {"weight_decay": None, "label_smoothing": 0.0, "logit_scale": 1.0, "low_res_epochs": 0,
                            "low_res": 20, "schedule": "one-cycle"}
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    flags = {f for a in commands["train"]._actions for f in a.option_strings}
    assert flags == TRAIN_FLAGS
    train = {a.dest: a for a in commands["train"]._actions}
    for name, knob in C.KNOBS.items():  # a flag's default is its knob's
        if knob.cli is not None:
            assert train[name].default == knob.default, name


def test_width_has_a_floor_where_the_network_stops_shrinking():
    """Issue 21: width 1e-9 was accepted. At 1/64 every layer is already down to one channel."""
    from lab.model import channels

    assert channels(C.WIDTH_MIN) == [1, 2, 4, 8] and C.TrainConfig(width=C.WIDTH_MIN).width == 1 / 64
    for bad in (1e-9, 0.01, 0, -1, 4.5):
        with pytest.raises(C.ConfigError, match=r"width multiplier must lie in \[1/64, 4.0\]"):
            C.TrainConfig(width=bad)
