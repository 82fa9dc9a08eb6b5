"""Training with in-training compression: optimizer, the jitted step, evaluation and the loop.

    state, metrics = train_step(model, optimizer, state, x, y, key)   # pure, jitted; model/optimizer static
    result = train(config, seed, dataset, out_dir=...)                 # the loop; writes the run record

At every evaluation the loop measures validation accuracy and snapshots the HSVs of every block; at every
scheduled attempt it compresses (`compression.compress`), re-measures validation and test accuracy on the
reduced model and resets the best-validation marker, so the reported test accuracy (taken at the best
validation accuracy) belongs to a model of the final size.
"""

import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from compressm import compression, lru, records
from compressm.configs import OptimConfig, RunConfig
from compressm.data import Dataset
from compressm.errors import CompressmError
from compressm.model import LRUClassifier, cross_entropy, state_sizes_of

SSM_PARAMS = lru.STATE_PARAMS  # lr * ssm_lr_factor, no weight decay


class TrainingDiverged(CompressmError):
    """The loss became NaN or infinite at `step`; the run is recorded as failed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


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


def build_model(config: RunConfig, dataset: Dataset, state_sizes: tuple[int, ...]) -> LRUClassifier:
    """The classifier of `config` for data set `dataset` with the given per-block state sizes."""
    model_config = dataclasses.replace(config.model, recurrence=resolved_recurrence(config))
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
@partial(jax.jit, static_argnames=("model", "optimizer"))
def train_step(model, optimizer, state: TrainState, x, y, key):
    """One AdamW step on a batch x (B, L, d), y (B,): returns (new state, {'loss', 'correct'})."""

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True,
            rngs={"dropout": key}, mutable=["batch_stats"],
        )
        return cross_entropy(logits, y, model.num_classes), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return TrainState(params, batch_stats, opt_state), {"loss": loss, "correct": correct}


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


def batch_indices(n: int, batch_size: int, key: jax.Array):
    """Endless minibatch indices (batch_size,): a fresh permutation per epoch, the last partial batch dropped."""
    epoch = 0
    while True:
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start:start + batch_size]
        epoch += 1


# ----------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ModelSelection:
    """The model at the best validation accuracy so far; `reset` makes the offered model the best.

    Its test accuracy is measured once, at the end (`test_accuracy`): the same number as measuring the
    test set at every improvement, for one pass over it instead of up to one per evaluation.
    """

    best_val: float = -math.inf
    step: int = 0
    model: LRUClassifier | None = None
    variables: dict | None = None

    def offer(self, step: int, val: float, model, state: TrainState, reset: bool = False) -> None:
        if reset or val > self.best_val:
            self.best_val, self.step, self.model = val, step, model
            self.variables = variables_of(state)

    def test_accuracy(self, xs, ys, batch_size: int) -> float:
        return accuracy(self.model, self.variables, xs, ys, batch_size) if self.model else math.nan


@dataclass
class Timer:
    """Wall-clock seconds per phase (training steps, evaluation, reduction)."""

    seconds: dict[str, float] = field(default_factory=lambda: {"train": 0.0, "eval": 0.0, "reduction": 0.0})

    def add(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


@dataclass
class RunResult:
    """What `train` returns (and, with out_dir, writes): the metrics record, HSV snapshots and final variables."""

    metrics: dict
    hsvs: dict[str, np.ndarray]
    variables: dict


def _check_finite(losses: list, first_step: int) -> None:
    """Raise TrainingDiverged naming the first step whose loss is not finite."""
    values = np.asarray(jnp.stack(losses))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise TrainingDiverged(f"loss became {values[bad[0]]} at step {step}", step)


def _attempt_reduction(config: RunConfig, dataset: Dataset, optimizer, model, state: TrainState, val: float,
                       checkpoint, step: int, key: jax.Array):
    """One scheduled reduction attempt: returns (model, state, checkpoint, events, rolled_back, hsvs).

    Pragmatic mode first rolls back to the model before its last reduction (and ends the attempts) if
    validation accuracy fell by more than rollback_tolerance since then; otherwise it keeps a checkpoint.
    `hsvs` is this step's HSV snapshot of the model as it was before the attempt.
    """
    red = config.reduction
    if red.mode == "pragmatic" and checkpoint and val < checkpoint[2] - red.rollback_tolerance:
        hsvs = compression.snapshot_hsv(state.params, step, red)
        model, state, _ = checkpoint
        return model, state, None, [], True, hsvs
    if red.mode == "pragmatic":
        checkpoint = (model, state, val)
    params, opt_state, events, hsvs = compression.compress(state.params, state.opt_state, optimizer, red, step, key)
    if events:
        state = TrainState(params, state.batch_stats, opt_state)
        model = build_model(config, dataset, state_sizes_of(params))
    return model, state, checkpoint, events, False, hsvs


def _window_summary(window: list, first_step: int, batch_size: int) -> tuple[float, float]:
    """Mean loss and running accuracy over the steps since the last evaluation (raises on a NaN loss)."""
    losses = [m["loss"] for m in window]
    _check_finite(losses, first_step)
    correct = int(jnp.sum(jnp.stack([m["correct"] for m in window])))
    return float(jnp.mean(jnp.stack(losses))), correct / (len(window) * batch_size)


def train(config: RunConfig, seed: int, dataset: Dataset, *, out_dir: Path | str | None = None,
          progress: bool = True, progress_interval_s: float = 0.5) -> RunResult:
    """Train `config` with `seed` on `dataset`; returns the run's RunResult and writes it to out_dir if given.

    A non-finite loss stops the run: the record is written with status 'failed' and TrainingDiverged raised.
    """
    out_dir = records.prepare_run_dir(out_dir) if out_dir is not None else None
    if config.batch_size > len(dataset.train_x):
        raise CompressmError(f"batch_size {config.batch_size} is larger than the training set"
                             f" ({len(dataset.train_x)} examples); lower batch_size or raise data_limit")
    keys = run_keys(seed)
    optimizer = make_optimizer(config.optim, config.steps)
    model = build_model(config, dataset, (config.model.state_size,) * config.model.num_blocks)
    state = init_state(model, optimizer, dataset.train_x[: config.batch_size], keys["init"])
    red = config.reduction
    attempts = set(red.attempt_steps())
    hsvs = compression.snapshot_hsv(state.params, 0, red)
    history, events, rollbacks, window = [], [], [], []
    selection, timer, checkpoint = ModelSelection(), Timer(), None
    batches = batch_indices(len(dataset.train_x), config.batch_size, keys["batches"])
    validate = lambda: accuracy(model, variables_of(state), dataset.val_x, dataset.val_y, config.eval_batch_size)
    status, failure = "complete", None
    bar = tqdm(total=config.steps, disable=not progress, mininterval=progress_interval_s,
               desc=f"{config.name} seed {seed}", unit="step")
    started = tick = time.perf_counter()
    try:
        for step in range(1, config.steps + 1):
            idx = next(batches)
            state, metrics = train_step(model, optimizer, state, dataset.train_x[idx], dataset.train_y[idx],
                                        jax.random.fold_in(keys["dropout"], step))
            window.append(metrics)
            if step % config.eval_every and step not in attempts and step != config.steps:
                if step % 50 == 0:  # catch a NaN early, and move the bar
                    _check_finite([m["loss"] for m in window[-50:]], step - 49)
                    bar.update(step - bar.n)
                continue
            train_loss, train_acc = _window_summary(window, step - len(window) + 1, config.batch_size)
            window = []
            tick = timer.add("train", tick)
            val = validate()
            row = {"step": step, "train_loss": train_loss, "train_acc": train_acc, "val_acc": val}
            if step not in attempts:  # an attempt takes this step's HSV snapshot itself, from the Gramians it balances
                hsvs.update(compression.snapshot_hsv(state.params, step, red))
            tick = timer.add("eval", tick)
            changed = False
            if step in attempts:
                model, state, checkpoint, reduced, rolled_back, snapshot = _attempt_reduction(
                    config, dataset, optimizer, model, state, val, checkpoint, step,
                    jax.random.fold_in(keys["reduction"], step))
                hsvs.update(snapshot)
                events += [e.to_dict() for e in reduced]
                if rolled_back:
                    rollbacks.append({"step": step, "val_acc": val})
                    attempts = set()
                changed = bool(reduced) or rolled_back
                tick = timer.add("reduction", tick)
            if changed:  # re-measure the new model, which becomes the best so far
                val = row["val_acc_after_reduction"] = validate()
            selection.offer(step, val, model, state, reset=changed)
            sizes = state_sizes_of(state.params)
            row.update(state_sizes=list(sizes), elapsed_s=time.perf_counter() - started)
            history.append(row)
            tick = timer.add("eval", tick)
            bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val:.3f}", N="/".join(map(str, sizes)), refresh=False)
            bar.update(step - bar.n)
    except TrainingDiverged as error:
        tick = timer.add("train", tick)
        status, failure = "failed", {"step": error.step, "reason": str(error)}
    finally:
        bar.close()
    test = selection.test_accuracy(dataset.test_x, dataset.test_y, config.eval_batch_size)
    timer.add("eval", tick)
    sizes = state_sizes_of(state.params)
    metrics = {
        "status": status,
        "failure": failure,
        "config": config.name,
        "profile": config.profile,
        "seed": seed,
        "recurrence": resolved_recurrence(config),
        "summary": {
            "test_acc": test,
            "best_val_acc": selection.best_val if history else math.nan,
            "best_step": selection.step,
            "state_sizes_at_best": list(selection.model.state_sizes) if selection.model else [],
            "final_state_sizes": list(sizes),
            "mean_state_size": float(np.mean(sizes)),
            "train_time_s": timer.seconds["train"],
            "eval_time_s": timer.seconds["eval"],
            "reduction_time_s": timer.seconds["reduction"],
            "wall_time_s": time.perf_counter() - started,
            "steps_done": history[-1]["step"] if history else 0,
        },
        "history": history,
        "reductions": events,
        "rollbacks": rollbacks,
    }
    result = RunResult(metrics, hsvs, variables_of(state))
    if out_dir is not None:
        records.save_run(out_dir, config, result.metrics, result.hsvs, result.variables)
    if status == "failed":
        where = f"; recorded as failed in {out_dir}" if out_dir is not None else ""
        raise TrainingDiverged(f"{failure['reason']}{where} (lower optim.lr or check the data)", failure["step"])
    return result
