"""Training with in-training compression: optimizer, the jitted step, evaluation and the loop.

    state, metrics = train_step(model, optimizer, state, x, y, key)   # pure, jitted; model/optimizer static
    result = train(config, seed, dataset, out_dir=...)                 # the loop; writes the run record

The loss is the config's objective (`objectives.objective_for`): the paper's cross-entropy by default; a
distillation run also takes its teacher (`distill.load_teacher`), whose logits on each batch the step receives.

The loop is a short walk over a `RunState`, the one object a checkpoint holds. At every evaluation it
measures validation accuracy and snapshots the HSVs of every block (and, if the config asks, it observes the
HSV dynamics between evaluations: `dynamics.observe`); at every scheduled attempt it
compresses (`compression.compress`) and re-measures validation accuracy on the reduced model. Model selection
follows both rules of `selection.py` (the paper's, which resets the best-validation marker after a reduction so
that the reported model has the final size, and the authors' trainer's); the config's `model_selection` gives
test_acc, the other is recorded beside it. With an out_dir, every evaluation ends with a checkpoint, and the same
call on the same folder resumes from it: the data order and every PRNG key are functions of the step, so a
resumed run ends exactly as an uninterrupted one. A checkpoint of another run or commit (`records.load_checkpoint`),
or one that does not hold a state of this model (`_resumed`), is refused with a one-line error, never trained on.
"""

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from compressm import compression, distill, dynamics, lru, records, reduction, selection
from compressm.configs import OptimConfig, RunConfig, check_seed
from compressm.data import Dataset
from compressm.errors import CompressmError, TrainingDiverged, excerpt
from compressm.model import LRUClassifier, state_sizes_of
from compressm.objectives import CROSS_ENTROPY, objective_for

SSM_PARAMS = lru.STATE_PARAMS  # lr * ssm_lr_factor, no weight decay


class TrainState(NamedTuple):
    params: dict
    batch_stats: dict
    opt_state: Any


def variables_of(state: TrainState) -> dict:
    """The model variables {'params', 'batch_stats'} of a training state."""
    return {"params": state.params, "batch_stats": state.batch_stats}


# ----------------------------------------------------------------------------------------------------------
# Optimizer, model, keys
# ----------------------------------------------------------------------------------------------------------
def make_schedule(optim: OptimConfig, steps: int, peak: float) -> optax.Schedule:
    """Constant `peak`, or linear warm-up from init_lr over warmup_frac of the steps then cosine to final_lr."""
    if optim.schedule == "constant":
        return optax.constant_schedule(peak)
    warmup = int(steps * optim.warmup_frac)
    return optax.join_schedules(
        [optax.linear_schedule(optim.init_lr, peak, warmup),
         optax.cosine_decay_schedule(peak, max(1, steps - warmup), alpha=optim.final_lr / peak)],
        boundaries=[warmup],
    )


def make_optimizer(optim: OptimConfig, steps: int) -> optax.GradientTransformation:
    """AdamW; parameters named in SSM_PARAMS get lr * ssm_lr_factor and no weight decay."""
    labels = lambda params: jax.tree_util.tree_map_with_path(
        lambda path, _: "ssm" if path[-1].key in SSM_PARAMS else "main", params)
    return optax.multi_transform(
        {"main": optax.adamw(make_schedule(optim, steps, optim.lr), weight_decay=optim.weight_decay),
         "ssm": optax.adamw(make_schedule(optim, steps, optim.lr * optim.ssm_lr_factor), weight_decay=0.0)},
        labels,
    )


def resolved_recurrence(config: RunConfig) -> str:
    """The recurrence this run uses: the config's, or lru.choose_recurrence's pick for 'auto'."""
    if config.model.recurrence != "auto":
        return config.model.recurrence
    return lru.choose_recurrence(jax.default_backend(), config.model.width)


def build_model(config: RunConfig, dataset: Dataset, state_sizes: tuple[int, ...], recurrence: str) -> LRUClassifier:
    """The classifier of `config` for data set `dataset` with the given per-block state sizes and recurrence."""
    model_config = dataclasses.replace(config.model, recurrence=recurrence)
    return LRUClassifier(tuple(state_sizes), dataset.input_dim, dataset.num_classes, model_config)


def run_keys(seed: int) -> dict[str, jax.Array]:
    """The run's named PRNG keys, each used for one purpose only."""
    names = ("split", "init", "batches", "dropout", "reduction")
    return dict(zip(names, jax.random.split(jax.random.PRNGKey(seed), len(names))))


def init_state(model: LRUClassifier, optimizer, sample_x: jax.Array, key: jax.Array) -> TrainState:
    """Initial parameters, batch statistics and optimizer state."""
    variables = model.init({"params": key}, sample_x, train=False)
    return TrainState(variables["params"], variables["batch_stats"], optimizer.init(variables["params"]))


# ----------------------------------------------------------------------------------------------------------
# Step and evaluation
# ----------------------------------------------------------------------------------------------------------
@partial(jax.jit, static_argnames=("model", "optimizer", "objective"))
def train_step(model, optimizer, state: TrainState, x, y, key, objective=CROSS_ENTROPY, targets=None):
    """One AdamW step on a batch x (B, L, d), y (B,) for the loss `objective` (`objectives.py`, static), given
    its `targets` (the teacher's logits (B, K) of a distillation run, else None): returns (new state,
    {'loss', 'correct', and the objective's own metrics})."""

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True,
            rngs={"dropout": key}, mutable=["batch_stats"],
        )
        loss, metrics = objective(logits, y, params, targets)
        return loss, (logits, updates["batch_stats"], metrics)

    (loss, (logits, batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return TrainState(params, batch_stats, opt_state), {"loss": loss, "correct": correct, **metrics}


@partial(jax.jit, static_argnames=("model",))
def _count_correct(model, params, batch_stats, x, y, mask):
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return jnp.sum((jnp.argmax(logits, axis=-1) == y) * mask)


def accuracy(model, variables: dict, xs: np.ndarray, ys: np.ndarray, batch_size: int) -> float:
    """Accuracy of {'params', 'batch_stats'} in evaluation mode over (xs, ys), in fixed-size batches."""
    n = len(xs)
    if n == 0:
        return math.nan
    batch_size = min(batch_size, n)
    correct = 0
    for start in range(0, n, batch_size):
        x, y = xs[start:start + batch_size], ys[start:start + batch_size]
        pad = batch_size - len(x)
        mask = np.r_[np.ones(len(x)), np.zeros(pad)].astype(np.float32)
        x, y = np.pad(x, ((0, pad), (0, 0), (0, 0))), np.pad(y, (0, pad))
        correct += _count_correct(model, variables["params"], variables["batch_stats"], x, y, mask)
    return float(correct) / n


def batch_indices(n: int, batch_size: int, key: jax.Array, first_step: int = 1):
    """Endless minibatch indices (batch_size,) from training step `first_step` on: a fresh permutation per epoch
    (of `fold_in(key, epoch)`), the last partial batch dropped. The batch of a step depends on the step alone."""
    per_epoch = n // batch_size
    epoch, position = divmod(first_step - 1, per_epoch)
    while True:
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        for start in range(position * batch_size, per_epoch * batch_size, batch_size):
            yield perm[start:start + batch_size]
        epoch, position = epoch + 1, 0


# ----------------------------------------------------------------------------------------------------------
# The run state: everything a run carries from one evaluation to the next, and what its checkpoint holds
# ----------------------------------------------------------------------------------------------------------
class Rollback(NamedTuple):
    """Pragmatic mode: the training state before the last reduction, and its validation accuracy."""

    train: TrainState
    val: float


@dataclass
class RunState:
    """A run between two steps. `step` is the last step done; `chosen` holds each rule's model selection
    (`selection.py`), whose test accuracy is measured once, at the end (the same number as measuring the test
    set at every change of the chosen model); `seconds` holds wall-clock seconds per phase
    (train, eval, reduction) and in all (wall), and the CPU seconds other processes took meanwhile
    (other_cpu, `records.OtherLoad`), summed over the segments of a resumed run; `resumes` lists
    the steps a resumed run started from, and `commits` the library commit of each segment (the start, then each
    resume). Everything else (model, data order, PRNG keys) follows from it."""

    step: int
    recurrence: str
    train: TrainState
    chosen: dict[str, selection.Chosen]
    rollback: Rollback | None
    history: list[dict]
    reductions: list[dict]
    rollbacks: list[dict]
    hsvs: dict[str, np.ndarray]
    seconds: dict[str, float]
    resumes: list[int]
    commits: list[str] = dataclasses.field(default_factory=list)
    dynamics: dict = dataclasses.field(default_factory=dict)  # the trace of `dynamics.observe` ({} if off)
    teacher: dict | None = None  # a distillation run's teacher (`distill.identity_of`), checked on resume


def _train_state_dict(state: TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats,
            "opt_state": flax.serialization.to_state_dict(state.opt_state)}


def _train_state_from(saved: dict, optimizer) -> TrainState:
    params = jax.tree.map(jnp.asarray, saved["params"])
    opt_state = flax.serialization.from_state_dict(optimizer.init(params), saved["opt_state"])
    return TrainState(params, jax.tree.map(jnp.asarray, saved["batch_stats"]), jax.tree.map(jnp.asarray, opt_state))


def state_dict(state: RunState) -> dict:
    """The run state as nested dicts of arrays and plain values: what a checkpoint holds."""
    rollback = state.rollback and {"train": _train_state_dict(state.rollback.train), "val": state.rollback.val}
    return {**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
            "train": _train_state_dict(state.train), "rollback": rollback,
            "chosen": {rule: chosen._asdict() for rule, chosen in state.chosen.items()}}


def state_from(saved: dict, optimizer: optax.GradientTransformation) -> RunState:
    """The RunState of `state_dict`'s output; the optimizer gives the structure of the optimizer states."""
    rollback = saved["rollback"] and Rollback(_train_state_from(saved["rollback"]["train"], optimizer),
                                              saved["rollback"]["val"])
    return RunState(**{**saved, "train": _train_state_from(saved["train"], optimizer),
                       "chosen": {rule: selection.Chosen(**c) for rule, c in saved["chosen"].items()},
                       "rollback": rollback})


def _same_shape(expected: jax.ShapeDtypeStruct, leaf) -> None:
    if expected.shape != np.shape(leaf):
        raise ValueError(f"an array of shape {np.shape(leaf)} where the model has {expected.shape}")


def _resumed(config: RunConfig, dataset: Dataset, optimizer, saved: dict, key: jax.Array, file: Path) -> RunState:
    """The RunState of checkpoint `saved` (read from `file`); a one-line CompressmError unless it holds a state of
    this model, with the shapes that initialising it (`key`) at the checkpoint's state sizes gives."""
    try:
        state = state_from(saved, optimizer)
        model = _model_of(config, dataset, state)
        expected = jax.eval_shape(lambda x: model.init({"params": key}, x, train=False), dataset.train_x[:1])
        jax.tree.map(_same_shape, expected, variables_of(state.train))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CompressmError(f"{file} does not hold a run state of this model ({excerpt(error)}); delete it to"
                             " start the run over") from None
    return state


def initial_state(config: RunConfig, dataset: Dataset, optimizer, key: jax.Array) -> RunState:
    """The state of a new run: initial model (with `key`), its HSV snapshot at step 0, nothing measured yet."""
    recurrence = resolved_recurrence(config)
    model = build_model(config, dataset, (config.model.state_size,) * config.model.num_blocks, recurrence)
    train_state = init_state(model, optimizer, dataset.train_x[: config.batch_size], key)
    return RunState(step=0, recurrence=recurrence, train=train_state,
                    chosen={rule: selection.start(rule) for rule in selection.RULES},
                    rollback=None, history=[], reductions=[], rollbacks=[],
                    hsvs=compression.snapshot_hsv(train_state.params, 0, config.reduction),
                    seconds={"train": 0.0, "eval": 0.0, "reduction": 0.0, "wall": 0.0, "other_cpu": 0.0},
                    resumes=[])


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What `train` returns (and, with out_dir, writes): the metrics record, HSV snapshots and final variables.

    `already_complete` says the run folder held this complete record before the call, which left it untouched.
    """

    metrics: dict
    hsvs: dict[str, np.ndarray]
    variables: dict
    already_complete: bool = False
    dynamics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # `dynamics.arrays`, {} if off


def load_result(path: Path | str) -> RunResult:
    """The RunResult of a complete record on disk; DamagedRecord if a file of it is (`records.verify_record`)."""
    records.verify_record(path)
    return RunResult(records.load_metrics(path), records.load_hsvs(path), records.load_variables(path), True,
                     records.load_dynamics(path))


@contextmanager
def _timed(seconds: dict[str, float], phase: str):
    """Add the wall-clock seconds of the `with` block to seconds[phase]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] += time.perf_counter() - start


def _check_finite(losses: list, first_step: int) -> None:
    """Raise TrainingDiverged naming the first step whose loss is not finite."""
    values = np.asarray(jnp.stack(losses))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise TrainingDiverged(f"loss became {values[bad[0]]} at step {step}", step)


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _window_row(window: list, step: int, batch_size: int) -> dict:
    """The history row of an evaluation at `step`: mean loss, running accuracy and the mean of the objective's
    own metrics (as train_<name>) over the steps since the last one (TrainingDiverged on a non-finite loss)."""
    losses = [m["loss"] for m in window]
    _check_finite(losses, step - len(window) + 1)
    correct = int(jnp.sum(jnp.stack([m["correct"] for m in window])))
    extra = {f"train_{k}": float(jnp.mean(jnp.stack([m[k] for m in window]))) for k in window[0]
             if k not in ("loss", "correct")}
    return {"step": step, "train_loss": float(jnp.mean(jnp.stack(losses))),
            "train_acc": correct / (len(window) * batch_size), **extra}


def _observe_dynamics(config: RunConfig, state: RunState, step: int) -> None:
    """The dynamics hook: if due, add the parameters after `step` to state.dynamics. Waiting for the step counts as
    training time, the measurement as evaluation time."""
    if dynamics.is_due(config.dynamics, step):
        with _timed(state.seconds, "train"):
            jax.block_until_ready(state.train.params)
        with _timed(state.seconds, "eval"):
            state.dynamics = dynamics.observe(state.dynamics, state.train.params, step, config.dynamics,
                                              config.reduction.system)


def _attempts(config: RunConfig, state: RunState) -> tuple[int, ...]:
    """The steps of the remaining reduction attempts (none after a pragmatic rollback)."""
    return () if state.rollbacks else config.reduction.attempt_steps()


def _model_of(config: RunConfig, dataset: Dataset, state: RunState) -> LRUClassifier:
    return build_model(config, dataset, state_sizes_of(state.train.params), state.recurrence)


def _validate(config: RunConfig, dataset: Dataset, model, state: RunState) -> float:
    return accuracy(model, variables_of(state.train), dataset.val_x, dataset.val_y, config.eval_batch_size)


def _attempt_reduction(config: RunConfig, optimizer, state: RunState, val: float, step: int, key: jax.Array) -> bool:
    """One scheduled reduction attempt on `state`; True if it changed the model (reduced it or rolled back).

    Pragmatic mode first rolls back to the model before its last reduction (which ends its attempts) if
    validation accuracy fell by more than rollback_tolerance since then; otherwise it keeps the model as the
    one to roll back to. Either way this step's HSV snapshot (of the model before the attempt) joins state.hsvs.
    """
    red = config.reduction
    if red.mode == "pragmatic" and state.rollback and val < state.rollback.val - red.rollback_tolerance:
        state.hsvs.update(compression.snapshot_hsv(state.train.params, step, red))
        state.train, state.rollback = state.rollback.train, None
        state.rollbacks.append({"step": step, "val_acc": val})
        return True
    if red.mode == "pragmatic":
        state.rollback = Rollback(state.train, val)
    result = compression.compress(state.train.params, state.train.opt_state, optimizer, red, step, key)
    state.hsvs.update(result.hsvs)
    if result.events:
        state.train = TrainState(result.params, state.train.batch_stats, result.opt_state)
        state.reductions += [event.to_dict() for event in result.events]
    return bool(result.events)


def _evaluate(config: RunConfig, dataset: Dataset, optimizer, model, state: RunState, row: dict,
              key: jax.Array) -> LRUClassifier:
    """The evaluation at row['step']: validation, HSV snapshot, the scheduled reduction attempt and model
    selection by each rule (`selection.select`). Appends the row to the history and returns the model, rebuilt
    if its sizes changed."""
    step = row["step"]
    attempt = step in _attempts(config, state)
    with _timed(state.seconds, "eval"):
        if not _all_finite(state.train.params):
            raise TrainingDiverged(f"parameters became non-finite at step {step}", step)
        val = row["val_acc"] = _validate(config, dataset, model, state)
        if not attempt:  # an attempt takes this step's HSV snapshot itself, from the Gramians it balances
            state.hsvs.update(compression.snapshot_hsv(state.train.params, step, config.reduction))
    with _timed(state.seconds, "reduction"):
        changed = attempt and _attempt_reduction(config, optimizer, state, val, step, key)
    with _timed(state.seconds, "eval"):
        val_after = val
        if changed:  # re-measure the new model
            model = _model_of(config, dataset, state)
            val_after = row["val_acc_after_reduction"] = _validate(config, dataset, model, state)
        state.chosen = {rule: selection.select(rule, chosen, val, val_after, changed, step, variables_of(state.train))
                        for rule, chosen in state.chosen.items()}
        row["state_sizes"] = list(state_sizes_of(state.train.params))
        state.history.append(row)
    return model


def _check_splits(config: RunConfig, dataset: Dataset) -> None:
    """One-line CompressmError if the data cannot feed this config: batches larger than the training set, or
    no validation examples for model selection."""
    if config.batch_size > len(dataset.train_x):
        raise CompressmError(f"batch_size {config.batch_size} is larger than the training set"
                             f" ({len(dataset.train_x)} examples); lower batch_size or raise data_limit")
    if len(dataset.val_x) == 0:
        raise CompressmError(f"the validation split is empty (val_frac {config.val_frac}); raise val_frac or"
                             " data_limit: model selection needs validation examples")


def train(config: RunConfig, seed: int, dataset: Dataset, *, out_dir: Path | str | None = None,
          teacher: distill.Teacher | None = None, progress: bool = True,
          progress_interval_s: float = 0.5) -> RunResult:
    """Train `config` with `seed` on `dataset`; returns the run's RunResult and writes it to out_dir if given.

    With out_dir the folder is claimed first (`records.claimed`: one writer, this run's identity only). A
    complete record there is returned untouched; a checkpoint there is resumed from. A non-finite loss or
    parameters stop the run: the record is written with status 'failed' and TrainingDiverged raised. A
    distillation run needs its `teacher` (`distill.load_teacher`); any other run takes none.
    """
    check_seed(seed)
    _check_splits(config, dataset)
    distill.check_given(config, seed, teacher)
    if out_dir is None:
        return _run(config, seed, dataset, None, teacher, progress, progress_interval_s)
    with records.claimed(out_dir, config, seed) as folder:
        if records.is_complete(folder):
            return load_result(folder)
        return _run(config, seed, dataset, folder, teacher, progress, progress_interval_s)


def _run(config: RunConfig, seed: int, dataset: Dataset, folder: Path | None, teacher: distill.Teacher | None,
         progress: bool, progress_interval_s: float) -> RunResult:
    """The loop: steps, and at each evaluation `_evaluate` then a checkpoint into `folder` (if any)."""
    keys = run_keys(seed)
    optimizer = make_optimizer(config.optim, config.steps)
    saved = records.load_checkpoint(folder, config, seed) if folder else None
    state = (_resumed(config, dataset, optimizer, saved, keys["init"], folder / records.CHECKPOINT) if saved
             else initial_state(config, dataset, optimizer, keys["init"]))
    if saved:
        distill.check_resumed(saved.get("teacher"), teacher)
        state.resumes.append(state.step)
    state.commits.append(records.library_commit())
    state.teacher = teacher.identity if teacher else None
    objective = objective_for(config.objective)
    targets_of = distill.teacher_logits_fn(teacher, dataset.input_dim, dataset.num_classes) if teacher else None
    model = _model_of(config, dataset, state)
    batches = batch_indices(len(dataset.train_x), config.batch_size, keys["batches"], state.step + 1)
    clock = time.perf_counter() - state.seconds["wall"]  # wall time goes on from the checkpoint's
    other, other_before = records.OtherLoad(), state.seconds.get("other_cpu", math.nan)  # NaN: not measured before
    window, failure = [], None
    bar = tqdm(total=config.steps, initial=state.step, disable=not progress, mininterval=progress_interval_s,
               desc=f"{config.name} seed {seed}", unit="step")
    try:
        for step in range(state.step + 1, config.steps + 1):
            _observe_dynamics(config, state, step - 1)  # after the checkpoint of step - 1, as on a resume
            with _timed(state.seconds, "train"):
                idx = next(batches)
                x = dataset.train_x[idx]
                state.train, metrics = train_step(model, optimizer, state.train, x, dataset.train_y[idx],
                                                  jax.random.fold_in(keys["dropout"], step), objective,
                                                  targets_of(x) if targets_of else None)
                window.append(metrics)
                if step % config.eval_every and step not in _attempts(config, state) and step != config.steps:
                    if step % 50 == 0:  # catch a NaN early, and move the bar
                        recent = window[-50:]
                        _check_finite([m["loss"] for m in recent], step - len(recent) + 1)
                        bar.update(step - bar.n)
                    continue
                row = _window_row(window, step, config.batch_size)
            window = []
            model = _evaluate(config, dataset, optimizer, model, state, row,
                              jax.random.fold_in(keys["reduction"], step))
            state.step = step
            state.seconds["wall"] = row["elapsed_s"] = time.perf_counter() - clock
            state.seconds["other_cpu"] = other_before + other.seconds()
            if folder:
                with _timed(state.seconds, "eval"):
                    records.save_checkpoint(folder, config, seed, state_dict(state))
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc']:.3f}",
                            N="/".join(map(str, row["state_sizes"])), refresh=False)
            bar.update(step - bar.n)
            if state.chosen[config.model_selection].stopped:  # the authors' early stop
                break
        _observe_dynamics(config, state, config.steps)
    except TrainingDiverged as error:
        failure = {"step": error.step, "reason": str(error)}
    except reduction.InvalidSystem as error:  # e.g. an eigenvalue pushed onto the unit circle
        failure = {"step": step, "reason": f"the model cannot be reduced at step {step}: {error}"}
    finally:
        bar.close()
    with _timed(state.seconds, "eval"):
        tests = _test_accuracies(config, dataset, state)
    state.seconds["wall"] = time.perf_counter() - clock
    state.seconds["other_cpu"] = other_before + other.seconds()
    return _finish(config, seed, state, tests, failure, folder)


def _test_accuracies(config: RunConfig, dataset: Dataset, state: RunState) -> dict[str, float]:
    """Test accuracy of each rule's chosen model (NaN where none was chosen), measured once per chosen step."""
    by_step = {}
    for chosen in state.chosen.values():
        if chosen.variables is not None and chosen.step not in by_step:
            model = build_model(config, dataset, state_sizes_of(chosen.variables["params"]), state.recurrence)
            by_step[chosen.step] = accuracy(model, chosen.variables, dataset.test_x, dataset.test_y,
                                            config.eval_batch_size)
    return {rule: by_step.get(chosen.step, math.nan) if chosen.variables is not None else math.nan
            for rule, chosen in state.chosen.items()}


def _selection_summary(chosen: selection.Chosen, test: float, measured: bool) -> dict:
    """A rule's outcome in a record: test accuracy, its best validation accuracy, the chosen step and sizes,
    and the step at which it stopped training (0: it did not)."""
    return {"test_acc": test, "best_val_acc": chosen.val if measured else math.nan, "best_step": chosen.step,
            "state_sizes_at_best": list(state_sizes_of(chosen.variables["params"])) if chosen.variables else [],
            "stopped_step": chosen.stopped}


def _finish(config: RunConfig, seed: int, state: RunState, tests: dict[str, float], failure: dict | None,
            folder: Path | None) -> RunResult:
    """The run's metrics record from its final state; written to `folder` if given. Raises TrainingDiverged
    after writing a failed record."""
    sizes = state_sizes_of(state.train.params)
    outcomes = {rule: _selection_summary(chosen, tests[rule], bool(state.history))
                for rule, chosen in state.chosen.items()}
    summary = {
        **{k: v for k, v in outcomes[config.model_selection].items() if k != "stopped_step"},
        "final_state_sizes": list(sizes),
        "mean_state_size": float(np.mean(sizes)),
        **{f"{phase}_time_s": state.seconds[phase] for phase in ("train", "eval", "reduction", "wall")},
        "other_cpu_s": state.seconds["other_cpu"],
        "steps_done": state.history[-1]["step"] if state.history else 0,
    }
    metrics = records.metrics_record(
        config, seed, status="failed" if failure else "complete", failure=failure, recurrence=state.recurrence,
        summary=summary, history=state.history, reductions=state.reductions, rollbacks=state.rollbacks,
        resumes=state.resumes, commits=state.commits, teacher=state.teacher, selection=outcomes)
    result = RunResult(metrics, state.hsvs, variables_of(state.train), dynamics=dynamics.arrays(state.dynamics))
    if folder is not None:
        records.save_run(folder, result.metrics, result.hsvs, result.variables, result.dynamics)
    if failure:
        where = f"; recorded as failed in {folder}" if folder is not None else ""
        raise TrainingDiverged(f"{failure['reason']}{where} (lower optim.lr or check the data)", failure["step"])
    return result
