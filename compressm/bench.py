"""Speed benchmarks (not tests): training step per recurrence and size, streaming inference, reductions, compiles.

Each measurement warms up, repeats, keeps the median, and is written as one JSON record to
<runs folder>/bench/<hardware>/<name>.json (`results.bench_root`, read back by `results.load_bench`) with the
hardware, versions and library commit (`records.environment`).

    python -m compressm bench                     # everything that fits this backend
    python -m compressm bench --only train_step/smnist reduction
"""

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from compressm import compression, records, regularise
from compressm.configs import ModelConfig, OptimConfig, ReductionConfig, get_config
from compressm.errors import CompressmError
from compressm.lru import RECURRENCES, choose_recurrence
from compressm.model import LRUClassifier, state_sizes_of, stream_logits
from compressm.objectives import CROSS_ENTROPY, objective_for
from compressm.paper import paper_table
from compressm.results import bench_root
from compressm.train import TrainState, accuracy, init_state, make_optimizer, train_step, variables_of


def _paper_shape(table: int, length: int, input_dim: int) -> tuple:
    """(blocks, width H, sequence length L, input dim, state sizes) of a paper table's model; the state sizes are
    the baseline's and those of its from-scratch runs (the sizes the paper's compressed runs reach)."""
    t = paper_table(table)
    model = get_config(t.baseline).model
    sizes = tuple(get_config(name).model.state_size for name in (t.baseline, *t.scratch))
    return model.num_blocks, model.width, length, input_dim, sizes


SHAPES = {"smnist": _paper_shape(2, 784, 1), "scifar": _paper_shape(3, 1024, 3)}
BATCH = 50
# The recurrence sweep behind lru.choose_recurrence: widths H x state sizes N (sMNIST's L = 784, batch 50)
WIDTH_SWEEP = {"cpu": (8, 16, 32, 64), "gpu": (8, 16, 32, 64, 128, 256, 512)}
STATE_SWEEP = {"cpu": (8, 16, 32, 64, 128, 256), "gpu": (64,)}


def time_call(fn, *, warmup: int = 2, repeats: int = 5) -> dict:
    """Median and min wall-clock seconds of fn() (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "times_s": times}


@contextmanager
def compiles():
    """Every XLA compilation inside the `with` block, collected as (function name, seconds) in the yielded list."""
    found = []

    def listen(event: str, seconds: float, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            found.append((kwargs.get("fun_name", "?"), seconds))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield found
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _model(dataset: str, state_size: int, recurrence: str, width: int | None = None) -> tuple[LRUClassifier, tuple]:
    blocks, default_width, length, input_dim, _ = SHAPES[dataset]
    width = width or default_width
    config = ModelConfig(num_blocks=blocks, width=width, state_size=state_size, recurrence=recurrence)
    return LRUClassifier((state_size,) * blocks, input_dim, 10, config), (length, input_dim)


def _reduction_config(precision: str = "float64") -> ReductionConfig:
    """The benchmarks' reduction: tolerance tau 0.10, one attempt at step 1."""
    return ReductionConfig(mode="tolerance", tau=0.10, first_step=1, every_steps=1, last_step=1, precision=precision)


def _batch(length, input_dim, batch=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch, length, input_dim), np.float32), rng.integers(0, 10, batch).astype(np.int32)


def bench_train_step(dataset: str, recurrence: str, state_size: int, repeats: int, width: int | None = None) -> dict:
    """One AdamW step of the paper's model at batch 50 (compile excluded, reported separately)."""
    model, (length, input_dim) = _model(dataset, state_size, recurrence, width)
    x, y = _batch(length, input_dim)
    optimizer = make_optimizer(OptimConfig(), 1000)
    state = init_state(model, optimizer, x, jax.random.PRNGKey(0))
    start = time.perf_counter()
    step = train_step.lower(model, optimizer, state, x, y, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - start
    timing = time_call(lambda: jax.block_until_ready(step(state, x, y, jax.random.PRNGKey(1))), repeats=repeats)
    return {**timing, "compile_s": compile_s, "recurrence": recurrence, "state_size": state_size,
            "batch": BATCH, "seq_len": length, "width": model.config.width, "blocks": len(model.state_sizes)}


# The authors' training step (camail-official/compressm), timed in a separate interpreter whose `compressm` is
# their package (the two share the name), at the shapes of Table 2: their LRU, optimizer and make_step, as
# their trainer calls them (scripts/train.py, training/trainer.py). Nothing of theirs is copied here.
_AUTHORS_STEP = """
import json, sys, time
import equinox as eqx, jax, jax.random as jr, numpy as np
from compressm.models.lru import LRU
from compressm.training.utils import classification_loss, create_optimizer, make_step
a = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.random((a["batch"], a["length"], a["input_dim"]), np.float32)
y = jax.nn.one_hot(rng.integers(0, 10, a["batch"]), 10)
out = {}
for n in a["sizes"]:
    model = LRU(num_blocks=a["blocks"], input_dim=a["input_dim"], state_dim=n, hidden_dim=a["width"], output_dim=10,
                key=jr.PRNGKey(0))
    state, spec = eqx.nn.State(model), jax.tree_util.tree_map(lambda _: True, model)
    opt = create_optimizer(lr=4e-4, num_steps=200000, weight_decay=0.0, ssm_lr_factor=1.0, use_warmup_cosine=False)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    step = lambda: jax.block_until_ready(make_step(model, spec, X, y, classification_loss, state, opt, opt_state,
                                                   jr.PRNGKey(1)))
    start = time.perf_counter(); step(); compile_s = time.perf_counter() - start
    step()
    times = []
    for _ in range(a["repeats"]):
        start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
    out[n] = {"median_s": float(np.median(times)), "min_s": min(times), "times_s": times, "compile_s": compile_s}
print(json.dumps(out))
"""


def authors_train_steps(checkout: Path | str, dataset: str, sizes, repeats: int) -> dict:
    """Time the authors' training step at the paper's shapes in a checkout of camail-official/compressm.

    Returns ({N: timing}, the checkout's commit); raises CompressmError naming the checkout if it is not one.
    """
    checkout = Path(checkout).expanduser().resolve()
    if not (checkout / "compressm" / "training" / "utils.py").is_file():
        raise CompressmError(f"{checkout} is not a checkout of camail-official/compressm (no compressm/training/"
                             "utils.py); clone it and pass its folder to --authors")
    blocks, width, length, input_dim, _ = SHAPES[dataset]
    shapes = {"sizes": list(sizes), "blocks": blocks, "width": width, "length": length, "input_dim": input_dim,
              "batch": BATCH, "repeats": repeats}
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    run = subprocess.run([sys.executable, "-c", _AUTHORS_STEP, json.dumps(shapes)], cwd=checkout, env=env,
                         capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompressmError(f"the authors' training step failed in {checkout}: {last}")
    timings = json.loads(run.stdout.strip().splitlines()[-1])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    return {int(n): timing for n, timing in timings.items()}, commit or "unknown"


def bench_versus_authors(dataset: str, repeats: int, checkout: Path | str) -> dict:
    """Our training step (recurrence 'auto') and the authors' at each of the paper's state sizes, in one run.

    speedup[N] = their step at N / ours at N; speedup_vs_full[N] = their step at the full size / ours at N.
    """
    sizes = SHAPES[dataset][4]
    theirs, commit = authors_train_steps(checkout, dataset, sizes, repeats)
    recurrence = choose_recurrence(jax.default_backend(), SHAPES[dataset][1])
    ours = {n: bench_train_step(dataset, recurrence, n, repeats) for n in sizes}
    full = max(sizes)
    return {"median_s": ours[full]["median_s"], "recurrence": recurrence, "state_size": full, "sizes": list(sizes),
            "ours_s": {n: t["median_s"] for n, t in ours.items()},
            "authors_s": {n: t["median_s"] for n, t in theirs.items()},
            "speedup": {n: theirs[n]["median_s"] / ours[n]["median_s"] for n in sizes},
            "speedup_vs_full": {n: theirs[full]["median_s"] / ours[n]["median_s"] for n in sizes},
            "authors_commit": commit, "batch": BATCH, "width": SHAPES[dataset][1]}


def bench_streaming(dataset: str, state_size: int, repeats: int, batch: int = 1) -> dict:
    """Recurrent inference, one input step at a time (as deployed): steps per second for `batch` streams."""
    model, (length, input_dim) = _model(dataset, state_size, "scan")
    x, _ = _batch(length, input_dim, batch)
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, train=False)
    run = jax.jit(lambda v, x: stream_logits(model, v, x))
    timing = time_call(lambda: jax.block_until_ready(run(variables, x)), repeats=repeats)
    return {**timing, "state_size": state_size, "batch": batch, "seq_len": length, "width": model.config.width,
            "blocks": len(model.state_sizes), "steps_per_s": length / timing["median_s"]}


def bench_reduction(dataset: str, repeats: int, precision: str = "float64") -> dict:
    """One reduction attempt of every block (HSVs + balanced truncation at tau 0.10), first call and warm.

    At initialisation the HSVs are flat, so tau 0.10 keeps about 80 % of the states: a worst case for the
    final eigendecomposition, whose cost grows as the cube of the kept size.
    """
    blocks, width, length, input_dim, sizes = SHAPES[dataset]
    model, _ = _model(dataset, sizes[0], "scan")
    variables = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 8, input_dim)), train=False)
    params, optimizer = variables["params"], make_optimizer(OptimConfig(), 1000)
    opt_state = optimizer.init(params)
    config = _reduction_config(precision)

    def reduce():
        result = compression.compress(params, opt_state, optimizer, config, 1, jax.random.PRNGKey(0))
        jax.block_until_ready((result.params, result.opt_state))
        return result.events

    start = time.perf_counter()
    events = reduce()
    first_s = time.perf_counter() - start
    timing = time_call(reduce, warmup=0, repeats=repeats)
    return {**timing, "first_call_s": first_s, "blocks": blocks, "state_size": sizes[0], "width": width,
            "new_sizes": [e.new_size for e in events], "precision": config.precision}


def bench_recompile(dataset: str, repeats: int) -> dict:
    """What compiles after a reduction of the paper's model (tau 0.10 at initialisation), and for how long.

    After the reduction, per phase: the first training step at the new sizes (one program for the whole model),
    the first evaluation, the next HSV snapshot and the next reduction attempt (one program per new state
    size each). Then all of them again, at sizes already seen: nothing should compile. Compilations in
    parallel threads overlap, so each phase also records its wall time, first (compiling) and again (warm);
    median_s is the first-time wall time of all phases together.
    """
    blocks, width, length, input_dim, sizes = SHAPES[dataset]
    recurrence = choose_recurrence(jax.default_backend(), width)
    model, _ = _model(dataset, sizes[0], recurrence)
    x, y = _batch(length, input_dim)
    optimizer, key = make_optimizer(OptimConfig(), 1000), jax.random.PRNGKey(0)
    config = _reduction_config()
    state = init_state(model, optimizer, x, key)
    jax.block_until_ready(train_step(model, optimizer, state, x, y, key))
    accuracy(model, variables_of(state), x, y, BATCH)
    reduced = compression.compress(state.params, state.opt_state, optimizer, config, 1, key)
    model = LRUClassifier(state_sizes_of(reduced.params), input_dim, 10, model.config)
    state = TrainState(reduced.params, state.batch_stats, reduced.opt_state)
    phases = {
        "train_step": lambda: jax.block_until_ready(train_step(model, optimizer, state, x, y, key)),
        "evaluation": lambda: accuracy(model, variables_of(state), x, y, BATCH),
        "hsv_snapshot": lambda: compression.snapshot_hsv(state.params, 2, config),
        "reduction": lambda: compression.compress(state.params, state.opt_state, optimizer, config, 2, key),
    }
    found, first_s, again_s = [], {}, {}
    for phase, run in phases.items():
        with compiles() as compiled:
            first_s[phase] = time_call(run, warmup=0, repeats=1)["median_s"]
        found += [{"phase": phase, "function": name, "seconds": seconds} for name, seconds in compiled]
    with compiles() as seen:
        again_s = {phase: time_call(run, warmup=0, repeats=1)["median_s"] for phase, run in phases.items()}
    return {"median_s": sum(first_s.values()), "compiles": found, "first_wall_s": first_s, "again_wall_s": again_s,
            "compiles_at_seen_sizes": len(seen), "recurrence": recurrence, "state_size": sizes[0],
            "new_sizes": list(model.state_sizes), "blocks": blocks, "width": width, "batch": BATCH}


REGULARISED_CONFIG = "smnist_hankel_n28"  # the regularisation baseline whose step `bench_regularised_step` times


def bench_regularised_step(dataset: str, state_size: int, repeats: int, width: int | None = None) -> dict:
    """The training step of the Hankel-regularised baseline (`REGULARISED_CONFIG`'s loss and lambda) beside the
    plain step, same model, batch and recurrence ('auto'), timed in one run: median_s is the regularised step,
    plain_s the plain one, slowdown their ratio, penalty_s the penalty and its gradient alone (float64). `width`
    H defaults to the paper's (a smaller one only to check that it runs)."""
    recurrence = choose_recurrence(jax.default_backend(), width or SHAPES[dataset][1])
    model, (length, input_dim) = _model(dataset, state_size, recurrence, width)
    x, y = _batch(length, input_dim)
    objective = objective_for(get_config(REGULARISED_CONFIG).objective)
    optimizer, key = make_optimizer(OptimConfig(), 1000), jax.random.PRNGKey(1)
    state = init_state(model, optimizer, x, jax.random.PRNGKey(0))
    steps = {name: train_step.lower(model, optimizer, state, x, y, key, loss).compile()
             for name, loss in (("plain", CROSS_ENTROPY), ("regularised", objective))}
    timed = {name: time_call(lambda s=step: jax.block_until_ready(s(state, x, y, key)), repeats=repeats)
             for name, step in steps.items()}
    penalty = jax.jit(jax.grad(regularise.hankel_penalty))
    timed["penalty"] = time_call(lambda: jax.block_until_ready(penalty(state.params)), repeats=repeats)
    return {**timed["regularised"], "plain_s": timed["plain"]["median_s"], "penalty_s": timed["penalty"]["median_s"],
            "slowdown": timed["regularised"]["median_s"] / timed["plain"]["median_s"], "recurrence": recurrence,
            "state_size": state_size, "hsv_weight": objective.weight, "batch": BATCH, "seq_len": length,
            "width": model.config.width, "blocks": len(model.state_sizes)}


def _benchmarks(backend: str, authors: Path | str | None = None):
    """(name, function) of every benchmark for this backend (sCIFAR training steps only on a GPU: several
    seconds per step on 2 CPU cores, dominated by dense matmuls); the authors' step only given their checkout."""
    if authors is not None:
        yield "versus_authors/smnist", lambda r: bench_versus_authors("smnist", r, authors)
    for dataset, (_, width, _, _, sizes) in SHAPES.items():
        for recurrence in RECURRENCES:
            if dataset == "scifar" and backend == "cpu":
                continue
            for n in sizes:
                yield f"train_step/{dataset}/{recurrence}/N{n}", lambda r, d=dataset, c=recurrence, n=n: \
                    bench_train_step(d, c, n, r)
        for n in sizes:
            yield f"streaming/{dataset}/N{n}", lambda r, d=dataset, n=n: bench_streaming(d, n, r)
        yield f"reduction/{dataset}", lambda r, d=dataset: bench_reduction(d, r)
        yield f"reduction/{dataset}/float32", lambda r, d=dataset: bench_reduction(d, r, "float32")
        yield f"recompile/{dataset}", lambda r, d=dataset: bench_recompile(d, r)
    for n in (256, 28):  # the regularised baseline: its training phase, and its fine-tune after the truncation
        yield f"regularised_step/smnist/N{n}", lambda r, n=n: bench_regularised_step("smnist", n, r)
    for width in WIDTH_SWEEP[backend]:  # where each recurrence pays: the rule of lru.choose_recurrence
        for n in STATE_SWEEP[backend]:
            for recurrence in RECURRENCES:
                yield f"width_sweep/smnist/{recurrence}/H{width}/N{n}", lambda r, c=recurrence, h=width, n=n: \
                    bench_train_step("smnist", c, n, r, width=h)


def hardware_slug(env: dict) -> str:
    """'cpu-2core' or 'gpu-nvidia-h100-80gb-hbm3': the folder name of a machine's records."""
    name = env["hardware"].replace(":", "")
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_benchmarks(only=None, out_dir=None, repeats: int = 5, authors: Path | str | None = None) -> list[dict]:
    """Run the benchmarks whose names start with any of `only` (all if None); write and return the records.

    `authors`: a checkout of camail-official/compressm, to time their training step beside ours; without it
    that benchmark is skipped (and said so).
    """
    selected = lambda name: not only or any(name.startswith(prefix) for prefix in only)
    if authors is None and selected("versus_authors/smnist"):
        print("versus_authors: skipped (give --authors PATH, a checkout of camail-official/compressm)", flush=True)
    env = records.environment()
    out_dir = Path(out_dir or bench_root() / hardware_slug(env))
    names = [name for name, _ in _benchmarks(env["backend"], authors)]
    unknown = [prefix for prefix in only or () if not any(name.startswith(prefix) for name in names)]
    if unknown:
        raise CompressmError(f"no benchmark named {', '.join(map(repr, unknown))} on {env['backend']}; the names"
                             f" start with {', '.join(sorted({name.split('/')[0] for name in names}))}")
    records.make_folder(out_dir, "--out")
    results = []
    for name, bench in _benchmarks(env["backend"], authors):
        if not selected(name):
            continue
        other, start = records.OtherLoad(), time.perf_counter()
        measured = bench(repeats)
        record = {"name": name, **measured, "repeats": repeats, "environment": env,
                  "other_cores": other.seconds() / (time.perf_counter() - start),  # what else ran, in cores
                  "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
        (out_dir / (name.replace("/", "__") + ".json")).write_text(json.dumps(record, indent=1))
        print(f"{name:40s} median {record['median_s'] * 1e3:10.2f} ms", flush=True)
        results.append(record)
    return results
