"""Tests for compressm.configs and compressm.paper: the packaged configs encode Table 1 and the paper's reduction
schedules, profiles scale them by one rule, overrides work, and bad input is a one-line ConfigError."""

import dataclasses
import re

import pytest
import yaml

from compressm.configs import (PROFILES, ModelConfig, OptimConfig, ReductionConfig, RunConfig, apply_profile,
                               config_names, from_dict, get_config)
from compressm.errors import CompressmError, ConfigError
from compressm.paper import SEEDS, paper_values, role, scratch_partners, table_configs, table_of

SMNIST = table_configs(2)
SCIFAR = table_configs(3)
PAPER_CONFIGS = SMNIST + SCIFAR
SMNIST_TAUS = {"smnist_tau0.01": 0.01, "smnist_tau0.02": 0.02, "smnist_tau0.04": 0.04}
SCIFAR_TAUS = {"scifar_tau0.05": 0.05, "scifar_tau0.10": 0.10, "scifar_tau0.15": 0.15}
TAU_CONFIGS = {**SMNIST_TAUS, **SCIFAR_TAUS}
NO_REDUCTION = [name for name in PAPER_CONFIGS if name not in TAU_CONFIGS]
STATE_SIZES = {  # Table 1 (baseline and tau runs) and the from-scratch sizes of Tables 2 and 3
    "smnist_baseline": 256, "smnist_tau0.01": 256, "smnist_tau0.02": 256, "smnist_tau0.04": 256,
    "smnist_scratch_n47": 47, "smnist_scratch_n28": 28, "smnist_scratch_n13": 13,
    "scifar_baseline": 384, "scifar_tau0.05": 384, "scifar_tau0.10": 384, "scifar_tau0.15": 384,
    "scifar_scratch_n161": 161, "scifar_scratch_n93": 93, "scifar_scratch_n57": 57,
}


def _config_error(name="smnist_tau0.02", profile="paper", overrides=None) -> str:
    """The message of the ConfigError that get_config raises; asserts it is one line."""
    with pytest.raises(ConfigError) as info:
        get_config(name, profile, overrides)
    message = str(info.value)
    assert message and "\n" not in message, f"not a one-line message: {message!r}"
    return message


# ---------------------------------------------------------------- packaged configs (profile "paper")

def test_config_names_cover_both_paper_tables():
    names = config_names()
    assert names == sorted(names)
    assert set(PAPER_CONFIGS) <= set(names)
    assert len(PAPER_CONFIGS) == 14 and set(STATE_SIZES) == set(PAPER_CONFIGS)


@pytest.mark.parametrize("name", config_names())
def test_every_packaged_config_loads_under_the_paper_profile(name):
    config = get_config(name, "paper")
    assert isinstance(config, RunConfig)
    assert config.name == name and config.profile == "paper"
    assert config.dataset == name.split("_")[0]
    assert config.data_limit is None
    assert config.model.dropout == 0.1
    assert get_config(name) == config  # "paper" is the default profile


@pytest.mark.parametrize("name", SMNIST)
def test_smnist_configs_encode_table1(name):
    c = get_config(name, "paper")
    assert c.dataset == "smnist"
    assert (c.model.num_blocks, c.model.width, c.model.state_size) == (1, 8, STATE_SIZES[name])
    assert (c.steps, c.batch_size, c.eval_every) == (200_000, 50, 5000)
    assert c.optim.lr == 4e-4 and c.optim.schedule == "constant"
    assert c.optim.weight_decay == 0.0 and c.optim.ssm_lr_factor == 1.0
    assert c.model.dropout == 0.1


@pytest.mark.parametrize("name", SCIFAR)
def test_scifar_configs_encode_table1(name):
    c = get_config(name, "paper")
    assert c.dataset == "scifar"
    assert (c.model.num_blocks, c.model.width, c.model.state_size) == (6, 512, STATE_SIZES[name])
    assert (c.steps, c.batch_size, c.eval_every) == (180_000, 50, 4500)
    assert c.optim.lr == 1e-3 and c.optim.schedule == "warmup_cosine"
    assert (c.optim.warmup_frac, c.optim.init_lr, c.optim.final_lr) == (0.1, 1e-7, 1e-7)
    assert c.optim.weight_decay == 0.05 and c.optim.ssm_lr_factor == 0.25
    assert c.model.dropout == 0.1


@pytest.mark.parametrize("name", sorted(SMNIST_TAUS))
def test_smnist_tau_configs_attempt_at_every_evaluation(name):
    red = get_config(name, "paper").reduction
    assert red.mode == "tolerance" and red.tau == SMNIST_TAUS[name]
    steps = red.attempt_steps()
    assert steps == tuple(range(5000, 200_001, 5000))
    assert len(steps) == 40 and steps[0] == 5000 and steps[-1] == 200_000


@pytest.mark.parametrize("name", sorted(SCIFAR_TAUS))
def test_scifar_tau_configs_attempt_four_times_in_the_warmup(name):
    c = get_config(name, "paper")
    assert c.reduction.mode == "tolerance" and c.reduction.tau == SCIFAR_TAUS[name]
    assert c.reduction.attempt_steps() == (4500, 9000, 13500, 18000)
    assert max(c.reduction.attempt_steps()) <= c.optim.warmup_frac * c.steps  # all within the 10 % warm-up


@pytest.mark.parametrize("name", NO_REDUCTION)
def test_baselines_and_scratch_configs_never_reduce(name):
    red = get_config(name, "paper").reduction
    assert red.mode == "none"
    assert red.attempt_steps() == ()


def test_tau_configs_differ_from_their_baseline_only_in_the_reduction():
    for taus, baseline in ((SMNIST_TAUS, "smnist_baseline"), (SCIFAR_TAUS, "scifar_baseline")):
        base = get_config(baseline)
        for name, tau in taus.items():
            c = get_config(name)
            assert dataclasses.replace(c, name=baseline, reduction=base.reduction) == base
            assert dataclasses.replace(c.reduction, mode="none", tau=0.0) == base.reduction
            assert c.reduction.tau == tau


# ---------------------------------------------------------------- profiles

@pytest.mark.parametrize("name", SMNIST)
def test_cpu_profile_keeps_evaluations_attempts_and_recipe(name):
    paper = get_config(name, "paper")
    cpu = get_config(name, "cpu")
    assert cpu == apply_profile(paper, "cpu")
    assert cpu.profile == "cpu" and cpu.steps == 10_000
    assert cpu.steps % cpu.eval_every == 0 and cpu.steps // cpu.eval_every == 40
    # the recipe is unchanged: optimizer (lr, schedule, decay), batch, model, data
    assert cpu.optim == paper.optim and cpu.model == paper.model
    assert (cpu.batch_size, cpu.val_frac, cpu.data_limit, cpu.dataset) == \
        (paper.batch_size, paper.val_frac, paper.data_limit, paper.dataset)
    red = cpu.reduction
    assert dataclasses.replace(red, first_step=paper.reduction.first_step, every_steps=paper.reduction.every_steps,
                               last_step=paper.reduction.last_step) == paper.reduction
    attempts = red.attempt_steps()
    if name in SMNIST_TAUS:
        assert len(attempts) == 40
        assert attempts[-1] == cpu.steps and attempts[0] == cpu.eval_every
        assert {b - a for a, b in zip(attempts, attempts[1:])} == {cpu.eval_every}  # evenly spaced
        # relative positions are those of the paper
        assert [s / cpu.steps for s in attempts] == [s / paper.steps for s in paper.reduction.attempt_steps()]
    else:
        assert attempts == ()


@pytest.mark.parametrize("name", SCIFAR)
def test_cpu_profile_refuses_scifar(name):
    message = _config_error(name, "cpu")
    assert "scifar" in message and "paper" in message
    with pytest.raises(ConfigError):
        apply_profile(get_config(name), "cpu")


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_smoke_profile_is_small_with_four_evaluations(name):
    paper, smoke = get_config(name, "paper"), get_config(name, "smoke")
    spec = PROFILES["smoke"]
    assert smoke.profile == "smoke" and smoke.steps == spec.steps[smoke.dataset] == 40
    assert smoke.steps // smoke.eval_every == 4
    assert smoke.data_limit == 256
    assert smoke.model.width == min(paper.model.width, 16)
    assert smoke.model.num_blocks == min(paper.model.num_blocks, 2)
    assert smoke.model.state_size == paper.model.state_size
    assert smoke.optim == paper.optim and smoke.batch_size == paper.batch_size
    attempts = smoke.reduction.attempt_steps()
    if name in TAU_CONFIGS:
        assert any(1 <= s <= smoke.steps for s in attempts)
        assert all(1 <= s <= smoke.steps for s in attempts)
    else:
        assert attempts == ()


def test_dynamics_keep_their_resolution_but_record_at_least_once_per_evaluation():
    paper, cpu, smoke = (get_config("smnist_dynamics", p) for p in ("paper", "cpu", "smoke"))
    assert paper.dynamics.every_steps == cpu.dynamics.every_steps == 50  # the committed cpu run's resolution
    assert smoke.dynamics.every_steps == smoke.eval_every == 10
    assert smoke.dynamics.last_step == paper.dynamics.last_step  # the trace stops at the end of the run
    assert get_config("smnist_baseline", "smoke").dynamics.every_steps == 0  # off stays off


def test_paper_profile_is_the_identity_and_profiles_are_three():
    assert set(PROFILES) == {"paper", "cpu", "smoke"}
    for name in ("smnist_tau0.02", "scifar_baseline"):
        config = get_config(name)
        assert apply_profile(config, "paper") is config


def test_overrides_apply_after_the_profile():
    smoke = get_config("smnist_tau0.02", "smoke")
    c = get_config("smnist_tau0.02", "smoke", {"steps": 20, "model.state_size": 64})
    assert c.steps == 20 and c.model.state_size == 64
    assert c.eval_every == smoke.eval_every and c.profile == "smoke"  # not rescaled by the override


# ---------------------------------------------------------------- errors

def test_unknown_config_name_suggests_the_closest():
    message = _config_error("smnist_tua0.02")
    assert "'smnist_tua0.02'" in message and "did you mean 'smnist_tau0.02'" in message


def test_unknown_override_key_suggests_the_closest():
    message = _config_error(overrides={"reduction.tua": 0.1})
    assert "'reduction.tua'" in message and "did you mean 'tau'" in message
    message = _config_error(overrides={"stpes": 10})
    assert "'stpes'" in message and "did you mean 'steps'" in message


@pytest.mark.parametrize("tau", [1.0, 1.5, -0.1])
def test_tau_outside_unit_interval_is_rejected(tau):
    assert f"reduction.tau must be in [0, 1), got {tau}" in _config_error(overrides={"reduction.tau": tau})


@pytest.mark.parametrize("tau", [0.0, 0.5, 0.999])
def test_tau_inside_unit_interval_is_accepted(tau):
    assert get_config("smnist_tau0.02", overrides={"reduction.tau": tau}).reduction.tau == tau


@pytest.mark.parametrize("steps", [0, -3])
def test_non_positive_steps_are_rejected(steps):
    assert f"steps must be a positive number of training steps, got {steps}" in \
        _config_error(overrides={"steps": steps})


@pytest.mark.parametrize("key, value, choice", [
    ("reduction.mode", "tolerence", "tolerance"),
    ("reduction.selection", "biggest", "largest"),
    ("optim.schedule", "cosine", "warmup_cosine"),
    ("model.recurrence", "fft", "conv"),
])
def test_unknown_literal_is_rejected_with_the_choices(key, value, choice):
    message = _config_error(overrides={key: value})
    assert repr(value) in message and repr(choice) in message


def test_unknown_dataset_is_rejected():
    message = _config_error(overrides={"dataset": "cifar"})
    assert "unknown dataset 'cifar'" in message and "scifar" in message


def test_unknown_profile_is_rejected():
    message = _config_error(profile="gpu")
    assert "unknown profile 'gpu'" in message
    with pytest.raises(ConfigError):
        apply_profile(get_config("smnist_baseline"), "Paper")


@pytest.mark.parametrize("overrides", [
    {"model.dropout": 1.0}, {"optim.lr": 0.0}, {"optim.lr": "abc"}, {"batch_size": 0}, {"eval_every": 0},
    {"val_frac": 1.0}, {"reduction.gate": 0.0}, {"reduction.fraction": 1.0}, {"reduction.every_steps": 0},
])
def test_other_bad_values_are_one_line_config_errors(overrides):
    _config_error(overrides=overrides)


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, CompressmError) and issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------- overrides and round trips

def test_dotted_override_changes_only_that_field():
    base = get_config("smnist_tau0.02")
    c = get_config("smnist_tau0.02", overrides={"reduction.tau": 0.05})
    assert c.reduction.tau == 0.05
    assert c == dataclasses.replace(base, reduction=dataclasses.replace(base.reduction, tau=0.05))
    c = get_config("smnist_tau0.02", overrides={"optim.lr": 1e-3, "model.width": 4, "steps": 7})
    assert (c.optim.lr, c.model.width, c.steps) == (1e-3, 4, 7)
    assert c.optim.schedule == base.optim.schedule and c.model.state_size == base.model.state_size


@pytest.mark.parametrize("name", config_names())
def test_to_dict_round_trips(name):
    profiles = ["paper", "smoke"] + (["cpu"] if name.startswith("smnist") else [])
    for profile in profiles:
        config = get_config(name, profile)
        values = config.to_dict()
        assert from_dict(values) == config
        assert from_dict(yaml.safe_load(yaml.safe_dump(values))) == config  # as written to config.yaml
        assert isinstance(values["model"], dict) and values["reduction"]["mode"] == config.reduction.mode


def test_from_dict_fills_defaults_and_rejects_unknown_keys():
    c = from_dict({"name": "x", "dataset": "smnist", "steps": 3, "batch_size": 2, "eval_every": 1})
    assert c.model == ModelConfig() and c.optim == OptimConfig() and c.reduction == ReductionConfig()
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        from_dict({"name": "x", "dataset": "smnist", "steps": 3, "batch_size": 2, "eval_every": 1,
                   "model": {"widht": 3}})


# ---------------------------------------------------------------- paper.py

@pytest.mark.parametrize("table, dataset, seeds", [(2, "smnist", 10), (3, "scifar", 5)])
def test_paper_tables_list_existing_configs(table, dataset, seeds):
    names = table_configs(table)
    assert len(names) == 7 and len(set(names)) == 7
    assert set(names) <= set(config_names())
    assert names[0] == f"{dataset}_baseline"
    assert [n.split("_")[1][:3] for n in names] == ["bas", "tau", "tau", "tau", "scr", "scr", "scr"]
    assert [role(n) for n in names] == ["baseline"] + ["compressed"] * 3 + ["scratch"] * 3
    for name in names:
        assert get_config(name).dataset == dataset and table_of(name) == table
    assert len(SEEDS[table]) == seeds and len(set(SEEDS[table])) == seeds


def test_a_config_in_no_table_is_a_config_error():
    with pytest.raises(ConfigError, match="no paper table"):
        table_of("smnist_tau0.03")


def test_unknown_table_is_a_config_error():
    with pytest.raises(ConfigError, match="2 .* 3"):
        table_configs(1)


def test_paper_values_hold_the_published_numbers():
    values = paper_values()
    assert set(values) == set(PAPER_CONFIGS)
    assert (values["smnist_tau0.02"]["accuracy"], values["smnist_tau0.02"]["state_size"]) == (96.9, 27.6)
    assert (values["scifar_tau0.10"]["accuracy"], values["scifar_tau0.10"]["state_size"]) == (85.7, 92.6)
    assert (values["smnist_baseline"]["accuracy"], values["scifar_baseline"]["accuracy"]) == (97.3, 86.5)
    assert values["scifar_tau0.15"]["speedup"] == 1.58
    for name, row in values.items():
        assert set(row) == {"accuracy", "accuracy_std", "state_size", "state_size_std", "speedup"}
        if name not in TAU_CONFIGS:  # baselines and from-scratch runs keep their configured size
            assert row["state_size"] == get_config(name).model.state_size


def test_scratch_sizes_are_the_rounded_sizes_the_tau_runs_reach():
    values = paper_values()
    pairs = scratch_partners(2) | scratch_partners(3)
    assert pairs == {"smnist_tau0.01": "smnist_scratch_n47", "smnist_tau0.02": "smnist_scratch_n28",
                     "smnist_tau0.04": "smnist_scratch_n13", "scifar_tau0.05": "scifar_scratch_n161",
                     "scifar_tau0.10": "scifar_scratch_n93", "scifar_tau0.15": "scifar_scratch_n57"}
    for tau, scratch in pairs.items():
        assert get_config(scratch).model.state_size == round(values[tau]["state_size"])


# ---------------------------------------------------------------- the paper's baselines (issue 16)

DISTILL = {"smnist_distill_n47": 47, "smnist_distill_n28": 28, "smnist_distill_n13": 13, "scifar_distill_n58": 58,
           "scifar_distill_n93": 93, "scifar_distill_n126": 126, "scifar_distill_n160": 160}


@pytest.mark.parametrize("name, size", sorted(DISTILL.items()))
def test_distillation_configs_are_their_recipe_at_the_student_size_with_the_authors_loss(name, size):
    c = get_config(name)
    baseline = get_config(f"{c.dataset}_baseline")
    assert c.objective.loss == "distillation" and c.objective.teacher == baseline.name
    assert (c.objective.temperature, c.objective.alpha) == (2.0, 0.5)  # the authors' distillation_loss
    assert dataclasses.replace(c, name=baseline.name, objective=baseline.objective,
                               model=dataclasses.replace(c.model, state_size=256 if c.dataset == "smnist" else 384)) \
        == baseline
    assert c.model.state_size == size and c.reduction.mode == "none"


def test_hankel_config_trains_regularised_then_truncates_to_28_with_a_fine_tune():
    paper, cpu, smoke = (get_config("smnist_hankel_n28", p) for p in ("paper", "cpu", "smoke"))
    assert paper.objective.loss == "hankel" and paper.objective.hsv_weight == 3e-3
    assert paper.model.state_size == 256 and (paper.reduction.mode, paper.reduction.rank) == ("rank", 28)
    assert paper.reduction.attempt_steps() == (190_000,)  # 10k fine-tune steps (5 %)
    assert cpu.reduction.attempt_steps() == (9_500,)  # the same 5 % on the cpu budget
    assert smoke.reduction.attempt_steps() == (smoke.steps,)  # clipped to a short run: it still truncates
    base = get_config("smnist_baseline")
    assert dataclasses.replace(paper, name=base.name, objective=base.objective, reduction=base.reduction) == base


def test_profiles_clip_only_attempts_beyond_the_run():
    for name in PAPER_CONFIGS:
        if get_config(name).reduction.mode != "none":
            for profile in ("cpu", "smoke") if name.startswith("smnist") else ("smoke",):
                attempts = get_config(name, profile).reduction.attempt_steps()
                assert attempts and max(attempts) <= get_config(name, profile).steps


@pytest.mark.parametrize("overrides, fragment", [
    ({"objective.loss": "distillation"}, "objective.teacher names the teacher"),
    ({"objective.teacher": "smnist_baseline"}, "objective.teacher names the teacher"),
    ({"objective.loss": "hankel"}, "objective.hsv_weight > 0 is the weight of the hankel loss"),
    ({"objective.hsv_weight": 0.1}, "objective.hsv_weight > 0 is the weight of the hankel loss"),
    ({"objective.temperature": 0.0}, "objective.temperature must be positive"),
    ({"objective.alpha": 1.5}, r"objective.alpha must be in \[0, 1\]"),
    ({"objective.loss": "kl"}, "objective.loss = 'kl' is not one of"),
    ({"reduction.mode": "rank"}, "reduction.mode = rank needs reduction.rank >= 1"),
])
def test_bad_objective_and_rank_values_are_one_line_config_errors(overrides, fragment):
    assert re.search(fragment, _config_error("smnist_scratch_n28", "paper", overrides))


def test_older_records_without_an_objective_load_as_cross_entropy():
    values = get_config("smnist_tau0.02").to_dict()
    del values["objective"]
    assert from_dict(values) == get_config("smnist_tau0.02")
