"""Run configurations as frozen, self-checking dataclasses, loaded from the YAML files in `compressm/configs/`.

A run is named by (config name, seed, profile). `get_config(name, profile, overrides)` returns the config
of the paper (profile "paper") or a scaled copy of it: see `apply_profile` for the one scaling rule.
A config file may name a `base:` config and override some of its fields; unknown keys are errors.
"""

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import yaml

from compressm.data import DATASETS
from compressm.errors import ConfigError, excerpt
from compressm.lru import Recurrence
from compressm.reduction import HsvSystem, Method, Precision, Selection

# The choices of the modules above this one (compression, train) are declared here, those of the modules below
# it (lru, reduction) there; each list once.
RecurrenceChoice = Literal["auto", Recurrence]
Schedule = Literal["constant", "warmup_cosine"]
Mode = Literal["none", "tolerance", "fixed", "pragmatic", "rank"]
OptStatePolicy = Literal["slice", "reset"]
NormRule = Literal["ema", "batch"]  # model.BatchNorm: the authors' equinox rule, or flax's batch statistics
DropoutMask = Literal["batch", "example"]  # model.Block: one dropout mask for the batch (the authors'), or one each
ModelSelection = Literal["paper", "authors"]  # train.select: which evaluation's model is reported
Loss = Literal["cross_entropy", "distillation", "hankel"]  # objectives.objective_for


MAX_SEED = 2**32 - 1  # jax.random.PRNGKey takes 32 bits: larger seeds overflow, negative ones alias others


def check_seed(seed: int) -> int:
    """`seed` if it is an integer in [0, MAX_SEED], else a ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {excerpt(seed)}")
    return seed


_KEY_PREFIX = {"ModelConfig": "model.", "OptimConfig": "optim.", "ReductionConfig": "reduction.",
               "DynamicsConfig": "dynamics.", "ObjectiveConfig": "objective.", "RunConfig": ""}


def _check_fields(obj) -> None:
    """Raise ConfigError if a field of dataclass `obj` has the wrong type or a Literal value outside its choices.

    Integers are accepted for float fields (and stored as floats); bools are not numbers here.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value = hints[f.name], getattr(obj, f.name)
        where = _KEY_PREFIX[type(obj).__name__] + f.name
        if typing.get_origin(hint) is Literal:
            if value not in typing.get_args(hint):
                raise ConfigError(f"{where} = {excerpt(value)} is not one of {list(typing.get_args(hint))}")
            continue
        allowed = typing.get_args(hint) or (hint,)  # `int | None` -> (int, NoneType)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, f.name, float(value))
        elif not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise ConfigError(f"{where} = {excerpt(value)} should be of type {names}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelConfig:
    """The LRU classifier: blocks x width H x state size N (Table 1), init ring and dropout."""

    num_blocks: int = 1
    width: int = 8
    state_size: int = 256
    dropout: float = 0.1
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 6.28
    recurrence: RecurrenceChoice = "auto"  # "auto": chosen per backend and shape by lru.choose_recurrence
    norm: NormRule = "ema"  # BatchNorm's training statistics: the authors' running mix, or the batch's (flax)
    time_channel: bool = True  # each step's input is [t / L, x_t], time first: the authors' runs ("time": "True")
    dropout_mask: DropoutMask = "batch"  # the authors' runs share one mask across the batch (one key per step)

    def __post_init__(self):
        _check_fields(self)
        _require(self.num_blocks >= 1 and self.width >= 1 and self.state_size >= 1,
                 "model.num_blocks, model.width and model.state_size must be positive integers")
        _require(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _require(0.0 <= self.r_min < self.r_max < 1.0, "model.r_min < model.r_max must lie in [0, 1)")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a constant or warm-up + cosine schedule; SSM parameters get lr * ssm_lr_factor, no decay."""

    lr: float = 1e-3
    schedule: Schedule = "constant"
    warmup_frac: float = 0.1  # linear warm-up from init_lr over this fraction of the steps
    init_lr: float = 1e-7
    final_lr: float = 1e-7  # cosine decays to this
    weight_decay: float = 0.0
    ssm_lr_factor: float = 1.0

    def __post_init__(self):
        _check_fields(self)
        _require(self.lr > 0 and self.ssm_lr_factor > 0, "optim.lr and optim.ssm_lr_factor must be positive")
        _require(0.0 <= self.warmup_frac < 1.0, f"optim.warmup_frac must be in [0, 1), got {self.warmup_frac}")
        _require(self.weight_decay >= 0, "optim.weight_decay must be >= 0")


@dataclass(frozen=True)
class ReductionConfig:
    """When and how to compress: the mode, its parameter, the attempt schedule and the truncation options."""

    mode: Mode = "none"
    tau: float = 0.0  # tolerance mode: fraction of Hankel energy (sum of HSVs) discarded
    fraction: float = 0.1  # fixed / pragmatic modes: fraction of states removed per attempt
    rank: int = 0  # rank mode: every block is truncated to this many states (a post-training truncation)
    gate: float = 0.95  # reduce a block only if its new size < gate * its current size
    first_step: int = 0  # attempts at first_step, first_step + every_steps, ... <= last_step
    every_steps: int = 0
    last_step: int = 0
    rollback_tolerance: float = 0.02  # pragmatic: roll back and stop if val accuracy drops by more
    selection: Selection = "largest"
    method: Method = "sqrtm"
    system: HsvSystem = "complex"  # whose HSVs: the paper's complex system, or Re() output
    precision: Precision = "float64"
    opt_state: OptStatePolicy = "slice"  # Adam moments after a reduction (see compression.py)

    def __post_init__(self):
        _check_fields(self)
        _require(0.0 <= self.tau < 1.0, f"reduction.tau must be in [0, 1), got {self.tau}")
        _require(0.0 < self.fraction < 1.0, f"reduction.fraction must be in (0, 1), got {self.fraction}")
        _require(0.0 < self.gate <= 1.0, f"reduction.gate must be in (0, 1], got {self.gate}")
        _require(self.mode != "rank" or self.rank >= 1, "reduction.mode = rank needs reduction.rank >= 1 states")
        if self.mode != "none":
            _require(self.first_step >= 1 and self.every_steps >= 1 and self.last_step >= self.first_step,
                     "reduction needs first_step >= 1, every_steps >= 1 and last_step >= first_step")

    def attempt_steps(self) -> tuple[int, ...]:
        """The training steps (1-based, after the step) at which a reduction is attempted."""
        if self.mode == "none":
            return ()
        return tuple(range(self.first_step, self.last_step + 1, self.every_steps))


@dataclass(frozen=True)
class DynamicsConfig:
    """HSV dynamics (`compressm.dynamics`): every block's Hankel operator H at steps 0, every_steps, 2 every_steps,
    ... <= last_step, and at the step before each, for the Weyl bound per step and per interval. 0 = off."""

    every_steps: int = 0
    last_step: int = 0

    def __post_init__(self):
        _check_fields(self)
        _require(self.every_steps >= 0 and self.last_step >= 0,
                 "dynamics.every_steps and dynamics.last_step must be >= 0")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training loss (`objectives.objective_for`): the paper's cross-entropy; knowledge distillation from a
    teacher run (the authors' `distillation_loss`, `distill.py`); or cross-entropy plus lambda times the sum of
    the HSVs of every block (Hankel nuclear-norm regularisation, `regularise.py`)."""

    loss: Loss = "cross_entropy"
    teacher: str = ""  # distillation: the config whose complete run of the same profile and seed teaches
    temperature: float = 2.0  # distillation: T, softening both distributions (the authors' 2)
    alpha: float = 0.5  # distillation: weight of the teacher term; 1 - alpha on the labels (the authors' 0.5)
    hsv_weight: float = 0.0  # hankel: lambda, the weight of the sum of HSVs of every block

    def __post_init__(self):
        _check_fields(self)
        _require(self.temperature > 0, f"objective.temperature must be positive, got {self.temperature}")
        _require(0.0 <= self.alpha <= 1.0, f"objective.alpha must be in [0, 1], got {self.alpha}")
        _require(self.hsv_weight >= 0, f"objective.hsv_weight must be >= 0, got {self.hsv_weight}")
        _require((self.loss == "distillation") == bool(self.teacher),
                 "objective.teacher names the teacher config of a distillation run, and only of one"
                 f" (loss {self.loss!r}, teacher {excerpt(self.teacher)})")
        _require((self.loss == "hankel") == (self.hsv_weight > 0),
                 "objective.hsv_weight > 0 is the weight of the hankel loss, and only of it"
                 f" (loss {self.loss!r}, hsv_weight {self.hsv_weight})")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run except its seed and output folder."""

    name: str
    dataset: str
    steps: int
    batch_size: int
    eval_every: int
    val_frac: float = 0.1
    eval_batch_size: int = 500  # evaluation only; results do not depend on it
    data_limit: int | None = None  # keep only this many examples per split (smoke profile)
    profile: str = "paper"
    # The reported model: "paper", the paper's text (the best validation accuracy, reset to the re-measured
    # accuracy of the reduced model after each reduction); "authors", the authors' trainer (no reset, ties
    # count, the just-reduced model, early stop after more than 10 evaluations without improvement). A run
    # records both (`selection.py`); this one is its test_acc, and "authors" ends training when it stops.
    model_selection: ModelSelection = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reduction: ReductionConfig = field(default_factory=ReductionConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def __post_init__(self):
        _check_fields(self)
        _require(self.steps >= 1, f"steps must be a positive number of training steps, got {self.steps}")
        _require(self.batch_size >= 1, f"batch_size must be positive, got {self.batch_size}")
        _require(self.eval_every >= 1, f"eval_every must be positive, got {self.eval_every}")
        _require(self.eval_batch_size >= 1, f"eval_batch_size must be positive, got {self.eval_batch_size}")
        _require(0.0 < self.val_frac < 1.0,
                 f"val_frac must be in (0, 1) (model selection needs a validation split), got {self.val_frac}")
        _require(self.data_limit is None or self.data_limit >= 1,
                 f"data_limit must be a positive number of examples or null, got {self.data_limit}")
        _require(self.dataset in DATASETS,
                 f"unknown dataset {excerpt(self.dataset)}{_closest(self.dataset, DATASETS)}")
        _require(not self.dynamics.every_steps or self.reduction.mode == "none",
                 "dynamics follows states of a fixed size: set reduction.mode = none or dynamics.every_steps = 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "reduction": ReductionConfig, "dynamics": DynamicsConfig,
             "objective": ObjectiveConfig}


def _closest(word: str, options) -> str:
    match = difflib.get_close_matches(str(word)[:100], list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else f" (known: {', '.join(sorted(options))})"


def _build(cls, values: dict, where: str):
    """Instantiate dataclass `cls` from a dict, raising ConfigError on unknown keys or wrong types."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown config key {excerpt(where + str(key))}{_closest(key, names)}")
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"bad value in {where.rstrip('.') or 'config'}: {error}") from None


def from_dict(values: dict) -> RunConfig:
    """A RunConfig from a nested dict (as in the YAML files and `to_dict`)."""
    values = dict(values)
    for section, cls in _SECTIONS.items():
        if section in values:
            if not isinstance(values[section], (dict, type(None))):
                raise ConfigError(f"config key {section!r} is a section; set its fields, e.g. {section}.<key>=...")
            values[section] = _build(cls, dict(values[section] or {}), f"{section}.")
    return _build(RunConfig, values, "")


# ----------------------------------------------------------------------------------------------------------
# Named configs (YAML in the package)
# ----------------------------------------------------------------------------------------------------------
class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors and aliases: a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&, *) are not allowed",
                                              event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str):
    """The value of YAML `text`, as yaml.safe_load gives it but without anchors or aliases (yaml.YAMLError): how
    every YAML a user or a run folder gives is read (--set values, config.yaml)."""
    return yaml.load(text, Loader=_NoAliasLoader)


def config_names() -> list[str]:
    """Names of the packaged configs, e.g. 'smnist_tau0.01'."""
    files = resources.files("compressm").joinpath("configs").iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _raw(name: str) -> dict:
    """The merged dict of config `name`, following `base:` links."""
    names = config_names()
    if name not in names:
        raise ConfigError(f"unknown config {excerpt(name)}{_closest(name, names)}")
    text = resources.files("compressm").joinpath("configs", f"{name}.yaml").read_text()
    values = load_yaml(text) or {}
    base = values.pop("base", None)
    merged = _raw(base) if base else {}
    return _merge(merged, values)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _parse_overrides(overrides: dict) -> dict:
    """{'reduction.tau': 0.1, 'steps': 10} -> nested dict."""
    nested: dict = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def get_config(name: str, profile: str = "paper", overrides: dict | None = None) -> RunConfig:
    """The packaged config `name`, scaled by `profile`, with dotted-key `overrides` applied last."""
    values = _raw(name)
    values["name"] = name
    config = apply_profile(from_dict(values), profile)
    if overrides and {"name", "profile"} & set(overrides):
        raise ConfigError("name and profile cannot be overridden; pick them with the config name and --profile")
    if overrides:
        config = from_dict(_merge(config.to_dict(), _parse_overrides(overrides)))
    return config


# ----------------------------------------------------------------------------------------------------------
# Profiles: the one scaling rule
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """A budget: how many steps per data set, how many evaluations, and (smoke only) smaller shapes."""

    name: str
    description: str
    steps: dict[str, int] = field(default_factory=dict)  # per data set; absent = the paper's
    evaluations: int | None = None  # evaluations over the run; None keeps the paper's (40 for both tables)
    data_limit: int | None = None
    max_width: int | None = None
    max_blocks: int | None = None
    plumbing: bool = False  # a check that the pipeline runs, not a result: never in the book's tables or claims


CPU_STEPS_SMNIST = 10_000
PROFILES = {
    "paper": Profile("paper", "the paper's recipe as published (Table 1)"),
    "cpu": Profile(
        "cpu",
        f"sMNIST on a 2-core CPU: the paper's recipe with {CPU_STEPS_SMNIST} of its 200k steps (5 %), chosen so"
        " that the 21 runs of Table 2 (7 configs x 3 seeds) take about two hours with the convolution"
        " recurrence; 40 evaluations and 40 reduction attempts, as in the paper",
        steps={"smnist": CPU_STEPS_SMNIST},
    ),
    "smoke": Profile(
        "smoke",
        "a seconds-long plumbing check, not a result: 40 steps, 4 evaluations, 256 examples per split,"
        " width <= 16 and <= 2 blocks",
        steps={"smnist": 40, "scifar": 40},
        evaluations=4,
        data_limit=256,
        max_width=16,
        max_blocks=2,
        plumbing=True,
    ),
}


def apply_profile(config: RunConfig, profile: str) -> RunConfig:
    """Scale a paper config to a profile, keeping its recipe.

    The rule: steps become the profile's, and the evaluation interval becomes steps / evaluations (the
    paper's count of evaluations, 40 for both tables, unless the profile sets its own). Every
    reduction-schedule step is multiplied by the same factor as the evaluation interval, rounded to whole
    steps (at least 1), and the first and last attempts are clipped to the run (so a late attempt, such as the
    post-training truncation of `rank` mode, lands on the last step of a short run instead of after it).
    Attempts therefore stay at the same evaluations: every evaluation for sMNIST, the first four for sCIFAR.
    With the paper's 40 evaluations (cpu) the number and relative position of the attempts are kept; smoke's 4
    evaluations keep at most 4.
    The warm-up is a fraction of the steps and scales by itself. HSV dynamics keep their resolution in steps
    (`dynamics.every_steps`), made at most one evaluation interval so that a short run still records a trace.
    Smoke also shrinks data and shapes.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {excerpt(profile)}{_closest(profile, PROFILES)}")
    spec = PROFILES[profile]
    if profile == "paper":
        return config
    if config.dataset not in spec.steps:
        raise ConfigError(
            f"profile {profile!r} has no budget for {config.dataset} (it covers {', '.join(spec.steps)});"
            " use --profile paper on a GPU"
        )
    steps = spec.steps[config.dataset]
    evaluations = spec.evaluations or config.steps // config.eval_every
    eval_every = max(1, steps // evaluations)
    factor = eval_every / config.eval_every
    scale = lambda s: max(1, round(s * factor))
    red = config.reduction
    first, every = min(scale(red.first_step), steps), scale(red.every_steps)
    last = max(first, min(scale(red.last_step), steps))
    reduction = dataclasses.replace(red, first_step=first, every_steps=every, last_step=last)
    dyn = config.dynamics
    dynamics = dataclasses.replace(dyn, every_steps=min(dyn.every_steps, eval_every)) if dyn.every_steps else dyn
    model = config.model
    if spec.max_width or spec.max_blocks:
        model = dataclasses.replace(
            model,
            width=min(model.width, spec.max_width or model.width),
            num_blocks=min(model.num_blocks, spec.max_blocks or model.num_blocks),
        )
    return dataclasses.replace(
        config, profile=profile, steps=steps, eval_every=eval_every, reduction=reduction, dynamics=dynamics,
        model=model,
        data_limit=spec.data_limit or config.data_limit,
    )

