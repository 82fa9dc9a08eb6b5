"""Experiments end to end: one run from a config name, the papermill reproduction of a table, the book build.

    run_experiment("smnist_tau0.02", seed=42, profile="smoke")          # load data, train, write the record
    reproduce(table_configs(2), seeds=(8, 42, 123), profile="cpu")     # one executed notebook per run, then build
    reproduce_jobs(table_configs(3), SEEDS[3], "paper", "slurm")       # the same notebooks as cluster jobs
"""

import difflib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import submitit
from tqdm import tqdm

from compressm import cluster, distill, records
from compressm.configs import check_seed, get_config
from compressm.data import check_available, load_dataset, resolve_data_dir
from compressm.errors import CompressmError, ConfigError, excerpt
from compressm.train import RunResult, load_result, run_keys, train

TRAIN_NOTEBOOK = records.REPO / "book" / "train.ipynb"
# Python's and IPython's own names: dunders (__annotations__), the history (_, __, ___, _i, _ii, _i3, _3, _ih, ...)
_IPYTHON_NAMES = re.compile(r"__\w+__|_(i{0,3}\d*|_{1,2}|[oid]h)")


def run_experiment(config_name: str, seed: int, profile: str = "paper", *, out_dir: Path | str | None = None,
                   root: Path | str | None = None, data_dir: Path | str | None = None,
                   overrides: dict | None = None, progress: bool = True) -> RunResult:
    """Train one configuration with one seed and write its record (default `records.run_dir`: the config's folder,
    or config@overrides for a run with overrides).

    A complete record of this run is returned as it is, before any data is loaded; an unfinished one resumes;
    a folder of another run is a one-line CompressmError (see `records.check_identity`). A distillation run
    reads its teacher from the runs folder `root` (`distill.load_teacher`; a one-line error if it is missing).
    """
    config = get_config(config_name, profile, overrides)
    check_seed(seed)
    out_dir = Path(out_dir) if out_dir else records.run_dir(records.runs_root(root), config, seed)
    records.check_identity(out_dir, config, seed)
    if records.is_complete(out_dir):
        return load_result(out_dir)
    teacher = distill.load_teacher(config, seed, records.runs_root(root)) if config.objective.teacher else None
    dataset = load_dataset(config.dataset, data_dir, key=run_keys(seed)["split"], val_frac=config.val_frac,
                           limit=config.data_limit)
    return train(config, seed, dataset, out_dir=out_dir, teacher=teacher, progress=progress,
                 progress_interval_s=30.0)


def check_parameters(namespace: dict, names_before: set) -> None:
    """In a parameterised notebook: ConfigError naming any injected parameter the parameters cell does not declare.

    `names_before` is set(globals()) taken in a cell before the parameters cell; the declared parameters are
    the annotated names of the parameters cell (`__annotations__`); injected ones are the other new names that
    hold literals (imports do not), Python's and IPython's own names aside (`_IPYTHON_NAMES`), so -p _config x is
    one too. Papermill only warns about an unknown parameter, so a typo (-p sed 7) would otherwise run the defaults.
    Also checks each value's type.
    """
    declared = namespace.get("__annotations__", {})
    for name in sorted(set(namespace) - names_before - set(declared)):
        literal = isinstance(namespace[name], (str, int, float, list, dict, type(None)))
        if literal and not _IPYTHON_NAMES.fullmatch(name):
            match = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise ConfigError(f"unknown notebook parameter {excerpt(name)}{hint}; the parameters are"
                              f" {', '.join(declared)}")
    for name, kind in declared.items():
        if not isinstance(namespace[name], kind) or (isinstance(namespace[name], bool) and kind is not bool):
            raise ConfigError(f"notebook parameter {name} = {excerpt(namespace[name])} should be of type"
                              f" {kind.__name__}")


def execute_run(notebook: Path, name: str, seed: int, profile: str, out_dir: Path, data_dir,
                root: Path) -> tuple[str, str]:
    """Execute the training notebook for one run into out_dir: ('complete', '') or ('failed', reason).

    A notebook that fails without writing its record (an exception before training, a dead kernel) gets a
    failed record; its checkpoint, if any, stays for the next attempt to resume from.
    """
    import papermill as pm

    parameters = {"config": name, "seed": seed, "profile": profile, "out_dir": str(out_dir),
                  "data_dir": str(data_dir), "runs": str(root)}
    try:  # fail fast, before papermill writes train.ipynb, if another process writes the folder
        with records.locked(out_dir):
            pass
    except CompressmError as error:
        return "failed", str(error)
    try:
        # the kernel's log level ERROR: its warning about unencrypted local TCP would break the progress bar
        pm.execute_notebook(str(notebook), str(out_dir / "train.ipynb"), parameters=parameters,
                            kernel_name="python3", progress_bar=False, cwd=str(notebook.parent),
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
        return "complete", ""
    except Exception as error:  # PapermillExecutionError, a dead kernel (nbclient's DeadKernelError), ...
        reason = (f"{error.ename}: {error.evalue}" if isinstance(error, pm.PapermillExecutionError)
                  else f"{type(error).__name__}: {' '.join(str(error).split())}")
    try:
        if records.record_state(out_dir) != "failed":
            records.save_failure(out_dir, get_config(name, profile), seed, reason)
    except CompressmError as error:  # e.g. another process writes the folder
        reason += f" (not recorded: {error})"
    return "failed", reason


def _plan(configs, seeds, profile: str, root: Path, data_dir: Path) -> list[tuple[str, int, Path, str]]:
    """(config, seed, folder, state before) of every run, after checking everything that would stop one:
    seeds, configs, the data, that no folder holds another run or a damaged record (`records.verify_record`),
    and that every distillation run has its complete teacher record (CompressmError, before any run). Seed by
    seed: every config of a seed comes before the next seed, so that a table stays balanced wherever it stops."""
    for seed in seeds:
        check_seed(seed)
    named = {name: get_config(name, profile) for name in configs}  # fail on a bad name or profile
    for dataset in sorted({config.dataset for config in named.values()}):
        check_available(dataset, data_dir)
    plan = []
    for seed in seeds:
        for name, config in named.items():
            out_dir = records.run_dir(root, config, seed)
            records.check_identity(out_dir, config, seed)
            state = records.record_state(out_dir)
            if state == "complete":
                records.verify_record(out_dir)
            elif config.objective.teacher:
                distill.check_teacher(config, seed, root)
            plan.append((name, seed, out_dir, state))
    return plan


def reproduce(configs, seeds, profile: str, *, root: Path | str | None = None, data_dir: Path | str | None = None,
              notebook: Path | str = TRAIN_NOTEBOOK, jobs: int = 1, build: bool = True) -> pd.DataFrame:
    """Execute the training notebook once per (config, seed) into its run folder, then build the book.

    Complete runs are skipped; unfinished ones (a checkpoint, or a failed record) are listed and resumed. A
    run whose notebook fails is recorded as failed (its executed notebook, kept beside the record, shows the
    error) and is never counted in a table. Bad seeds or configs, missing data and folders holding another run
    stop everything before any run starts. With jobs > 1, that many notebooks run at once, each
    single-threaded (XLA_FLAGS); it pays only where cores do not share memory bandwidth (on the 2-core CPU that made
    the committed runs it gained nothing). Compilations are cached on disk ($JAX_COMPILATION_CACHE_DIR, default
    ~/.cache/compressm/jax) across runs. Returns one row per run: config, seed, before (its state before this
    call: new, unfinished, failed, complete), status (complete, failed, skipped (complete)), reason, path.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    root, notebook = records.runs_root(root).resolve(), Path(notebook)
    data_dir = resolve_data_dir(data_dir).resolve()  # notebooks run in book/: relative paths would move
    plan = _plan(list(dict.fromkeys(configs)), list(dict.fromkeys(seeds)), profile, root, data_dir)
    unfinished = [f"{name} seed {seed}" for name, seed, _, before in plan if before in ("unfinished", "failed")]
    if unfinished:
        tqdm.write(f"resuming {len(unfinished)} unfinished run(s): {', '.join(unfinished)}")
    _cache_compilations()
    if jobs > 1:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    outcomes = {(name, seed): ("skipped (complete)", "") for name, seed, _, before in plan if before == "complete"}
    todo = [run for run in plan if run[3] != "complete"]
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(total=len(todo), desc="runs", unit="run") as bar:
        futures = {pool.submit(execute_run, notebook, name, seed, profile, out_dir, data_dir, root): (name, seed)
                   for name, seed, out_dir, _ in todo}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            bar.set_postfix_str(f"{' seed '.join(map(str, futures[future]))}: {outcomes[futures[future]][0]}")
            bar.update()
    if build:
        build_book(root)
    return pd.DataFrame([(name, seed, before, *outcomes[name, seed], str(path)) for name, seed, path, before in plan],
                        columns=["config", "seed", "before", "status", "reason", "path"])


def _cache_compilations() -> None:
    """Cache XLA compilations on disk across runs ($JAX_COMPILATION_CACHE_DIR, default ~/.cache/compressm/jax)."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "compressm" / "jax"))


def _being_written(out_dir: Path) -> bool:
    """Whether a live process holds run folder out_dir's writer lock (`records.locked`)."""
    if not (out_dir / records.LOCK).is_file():
        return False
    try:
        with records.locked(out_dir):
            return False
    except CompressmError:
        return True


def _run_status(out_dir: Path, state: str, scheduled: str | None) -> str:
    """A run's status: complete (its record), queued or running (its last job's scheduler state, or a live
    writer), unknown (the scheduler does not list its last job), else its record state (new, unfinished,
    failed)."""
    if state == "complete":
        return state
    if scheduled in ("queued", "running"):
        return scheduled
    return "running" if _being_written(out_dir) else scheduled or state


def _job_outcome(job) -> tuple[str, str]:
    """(status, reason) of an ended job: `execute_run`'s, or ('failed', why) if the job ended without one."""
    try:
        return job.result()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as error:
        return "failed", str(error).splitlines()[0]


def reproduce_jobs(configs, seeds, profile: str, executor: cluster.Executor, *,
                   options: cluster.JobOptions | None = None, root: Path | str | None = None,
                   data_dir: Path | str | None = None, notebook: Path | str = TRAIN_NOTEBOOK,
                   job_dir: Path | str | None = None, wait: bool = False, build: bool = True) -> pd.DataFrame:
    """`reproduce` through a scheduler: one job per run (`cluster.submit`, a job array on slurm), each executing the
    notebook into the run's folder as `reproduce` does; jobs are requeued on preemption or timeout and resume.

    Runs that are complete, queued or running are left alone; the others (new, unfinished, failed, and unknown:
    the scheduler no longer lists their last job) are submitted.
    Without `wait` it returns once they are submitted, and the same call later reports each run's status (from
    its record, its folder's lock and its last job's scheduler state) and resubmits only runs whose job ended
    without a complete record. The book is built once every run is complete. Job pickles and logs go to
    job_dir (default <runs>/jobs). Returns one row per run: config, seed, before (new, unfinished, failed,
    unknown, queued, running, complete), status (submitted, queued, running, complete; with `wait`: complete or
    failed), reason, job, log (the job's standard output), path.
    """
    root, notebook = records.runs_root(root).resolve(), Path(notebook).resolve()
    data_dir = resolve_data_dir(data_dir).resolve()
    job_dir = Path(job_dir or root / "jobs").resolve()
    plan = _plan(list(dict.fromkeys(configs)), list(dict.fromkeys(seeds)), profile, root, data_dir)
    submitter = cluster.make_executor(executor, job_dir, options or cluster.JobOptions())
    _cache_compilations()
    with records.locked(job_dir, "--job-dir"):  # one submitter at a time: jobs.json is read, then rewritten
        ledger = cluster.load_jobs(job_dir)
        scheduled = cluster.scheduler_states([ledger.get(str(out_dir)) if state != "complete" else None
                                              for *_, out_dir, state in plan])
        before = [_run_status(out_dir, state, s) for (*_, out_dir, state), s in zip(plan, scheduled)]
        todo = [run for run, status in zip(plan, before) if status in ("new", "unfinished", "failed", "unknown")]
        jobs = cluster.submit(submitter, [(notebook, name, seed, profile, out_dir, data_dir, root)
                                          for name, seed, out_dir, _ in todo])
        ledger.update({str(out_dir): {"job": job.job_id, "executor": executor} for (*_, out_dir, _), job
                       in zip(todo, jobs)})
        cluster.save_jobs(job_dir, ledger)
    if jobs:
        tqdm.write(f"submitted {len(jobs)} job(s) to {executor}; their logs are in {job_dir}")
    outcomes = {str(out_dir): _job_outcome(job) if wait else ("submitted", "")
                for (*_, out_dir, _), job in zip(todo, jobs)}
    rows = []
    for (name, seed, out_dir, _), status in zip(plan, before):
        job_id = ledger[str(out_dir)]["job"] if str(out_dir) in ledger else None
        rows.append((name, seed, status, *outcomes.get(str(out_dir), (status, "")), job_id,
                     job_id and str(cluster.log_path(job_dir, job_id)), str(out_dir)))
    outcome = pd.DataFrame(rows, columns=["config", "seed", "before", "status", "reason", "job", "log", "path"])
    if build and (outcome.status == "complete").all():
        build_book(root)
    elif build:
        tqdm.write("the book is built when every run is complete: run the same command again to see their status")
    return outcome


def build_book(root: Path | str | None = None, output: Path | str | None = None) -> Path:
    """Build the Jupyter Book (warnings are errors) from the runs in `root`; returns the HTML folder."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if jb is None:
        raise CompressmError("jupyter-book is not installed; run: pip install -r requirements.txt")
    env = {**os.environ, records.RUNS_ENV: str(records.runs_root(root).resolve())}
    # --all: result pages read runs/, which Sphinx does not track, so every page is re-read and re-executed
    command = [jb, "build", str(records.REPO), "--all", "-W", "-n", "--keep-going"]
    if output:
        command += ["--path-output", str(output)]
    if subprocess.run(command, env=env).returncode != 0:
        raise CompressmError("the book build failed (see the log above); fix the page it names and re-run")
    return Path(output or records.REPO) / "_build" / "html"
