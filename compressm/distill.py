"""Knowledge distillation: a student of state size N learns from the complete full-size run of the same profile and
seed (the paper's Table 7 baseline).

The loss is the authors' `distillation_loss` (their `philipp/lra` branch), with p = softmax(logits):

    alpha T^2 CE(softmax(log p_teacher / T), softmax(log p_student / T)) + (1 - alpha) CE(labels, p_student)

with T = 2 and alpha = 0.5 (`configs.ObjectiveConfig`) and CE(q, p) = -sum q log(p + 1e-8), the paper's
cross-entropy (`model.cross_entropy`). softmax(log p / T) = softmax(logits / T), which is what is computed. The
soft term is the KL divergence plus the teacher's entropy, which does not depend on the student.

The teacher is read from its record (`params.msgpack`, `load_teacher`) and runs in evaluation mode (running
BatchNorm statistics, no dropout) on every training batch of the student (`teacher_logits_fn`); its forward
passes are part of the student's training time. The student's record keeps the teacher's `identity`, with a
digest of its parameters: a resumed student checks that its teacher has not changed.
"""

import dataclasses
import hashlib
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from compressm import records
from compressm.configs import RunConfig, get_config
from compressm.errors import CompressmError, ConfigError
from compressm.model import LRUClassifier, cross_entropy, state_sizes_of


def soft_cross_entropy(targets: jax.Array, logits: jax.Array) -> jax.Array:
    """CE(targets, softmax(logits)) = mean over the batch of -sum targets log(softmax(logits) + 1e-8), the paper's
    cross-entropy with soft targets; targets and logits (B, K), targets rows summing to 1."""
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.mean(-jnp.sum(targets * jnp.log(probs + 1e-8), axis=-1))


def distillation_loss(logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array, temperature: float,
                      alpha: float) -> jax.Array:
    """The authors' distillation loss (module docstring) of student logits (B, K) against teacher logits (B, K)
    and integer labels (B,): a scalar, the mean over the batch."""
    soft_targets = jax.nn.softmax(teacher_logits / temperature, axis=-1)
    soft = soft_cross_entropy(soft_targets, logits / temperature)
    hard = cross_entropy(logits, labels, logits.shape[-1])
    return alpha * temperature**2 * soft + (1 - alpha) * hard


# ----------------------------------------------------------------------------------------------------------
# The teacher: a complete record of the default recipe, same profile and seed
# ----------------------------------------------------------------------------------------------------------
class Teacher(NamedTuple):
    """A teacher run loaded from its record."""

    config: RunConfig  # the teacher's config, as packaged and scaled to the student's profile
    seed: int
    variables: dict  # its final {'params', 'batch_stats'} (numpy)
    recurrence: str  # the recurrence it trained with
    identity: dict  # what the student's record and checkpoint keep (`identity_of`)


def teacher_config(config: RunConfig) -> RunConfig:
    """The teacher's config of distillation config `config`: objective.teacher at config's profile. ConfigError
    if it is unknown, trained by distillation itself, or on another data set."""
    name = config.objective.teacher
    try:
        teacher = get_config(name, config.profile)
    except ConfigError as error:
        raise ConfigError(f"objective.teacher of {config.name}: {error}") from None
    if teacher.objective.loss == "distillation":
        raise ConfigError(f"objective.teacher of {config.name} is {name}, itself a distillation config;"
                          " a teacher is trained on the labels")
    if teacher.dataset != config.dataset:
        raise ConfigError(f"objective.teacher of {config.name} is {name}, trained on {teacher.dataset}, not"
                          f" {config.dataset}")
    return teacher


def teacher_folder(config: RunConfig, seed: int, root: Path | str) -> Path:
    """The record folder of the teacher of distillation run (config, seed) under runs folder `root`: the teacher
    config's own folder (never an @overrides variant), so a teacher is always a counted record."""
    return records.run_dir(root, teacher_config(config), seed)


def teacher_command(config: RunConfig, seed: int, root: Path | str) -> str:
    """The command that makes the teacher record of distillation run (config, seed)."""
    return (f"python -m compressm train {config.objective.teacher} --seed {seed} --profile {config.profile}"
            f" --runs {root}")


def check_teacher(config: RunConfig, seed: int, root: Path | str) -> Path:
    """The teacher's record folder; a one-line CompressmError naming the command that makes it unless it holds a
    complete, undamaged (`records.verify_record`) run of the teacher's config and seed."""
    folder = teacher_folder(config, seed, root)
    state = records.record_state(folder) if folder.is_dir() else "new"
    if state != "complete":
        what = {"new": "missing", "unfinished": "unfinished", "failed": "a failed run"}[state]
        raise CompressmError(f"{records.describe(config, seed)} learns from the teacher"
                             f" {records.describe(teacher_config(config), seed)}, whose record {folder} is {what};"
                             f" make it first: {teacher_command(config, seed, root)}")
    records.check_identity(folder, teacher_config(config), seed)
    try:
        records.verify_record(folder)
    except records.DamagedRecord as error:
        raise CompressmError(f"{records.describe(config, seed)} learns from a damaged teacher record: {error}"
                             f" ({teacher_command(config, seed, root)})") from None
    return folder


def identity_of(folder: Path | str, config: RunConfig, seed: int) -> dict:
    """A teacher's identity: its config name, profile and seed, the SHA-256 of its params.msgpack and the
    library commit its record names."""
    digest = hashlib.sha256((Path(folder) / "params.msgpack").read_bytes()).hexdigest()
    commit = records.load_metrics(folder)["environment"]["commit"]
    return {"config": config.name, "profile": config.profile, "seed": seed, "params_sha256": digest,
            "commit": commit}


def load_teacher(config: RunConfig, seed: int, root: Path | str) -> Teacher:
    """The teacher of distillation run (config, seed), read from its complete record under runs folder `root`
    (`check_teacher`'s error if there is none)."""
    folder = check_teacher(config, seed, root)
    teacher = teacher_config(config)
    recurrence = records.load_metrics(folder)["recurrence"]
    return Teacher(teacher, seed, records.load_variables(folder), recurrence, identity_of(folder, teacher, seed))


def check_given(config: RunConfig, seed: int, teacher: Teacher | None) -> None:
    """CompressmError unless `teacher` is the teacher that run (config, seed) names, or None when it names none."""
    wanted = config.objective.teacher
    if not wanted and teacher is None:
        return
    if teacher is None or not wanted:
        raise CompressmError(f"{records.describe(config, seed)} " + (
            f"learns from the teacher {wanted}: pass teacher=distill.load_teacher(config, seed, runs_root)"
            if wanted else "is not a distillation run, and takes no teacher"))
    if (teacher.config.name, teacher.config.profile, teacher.seed) != (wanted, config.profile, seed):
        raise CompressmError(f"{records.describe(config, seed)} learns from {wanted} seed {seed} ({config.profile}"
                             f" profile), not from {records.describe(teacher.config, teacher.seed)}")


def check_resumed(before: dict | None, teacher: Teacher | None) -> None:
    """CompressmError if the teacher identity a checkpoint holds (`before`) is not that of the teacher given now:
    its record was replaced while the student was unfinished."""
    now = teacher.identity if teacher else None
    if before != now:
        digest = lambda identity: identity["params_sha256"][:12] if identity else "none"
        raise CompressmError(f"the teacher changed since this run started (parameters {digest(before)} then,"
                             f" {digest(now)} now); delete this run's folder to train it again from the start")


@partial(jax.jit, static_argnames=("model",))
def _eval_logits(model: LRUClassifier, variables: dict, x: jax.Array) -> jax.Array:
    return model.apply(variables, x, train=False)


def teacher_logits_fn(teacher: Teacher, input_dim: int, num_classes: int) -> Callable[[jax.Array], jax.Array]:
    """x (B, L, d) -> the teacher's logits (B, K) in evaluation mode; one program compiled per batch shape."""
    model_config = dataclasses.replace(teacher.config.model, recurrence=teacher.recurrence)
    model = LRUClassifier(state_sizes_of(teacher.variables["params"]), input_dim, num_classes, model_config)
    variables = jax.device_put(teacher.variables)
    return lambda x: _eval_logits(model, variables, x)
