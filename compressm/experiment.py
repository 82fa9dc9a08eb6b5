"""Experiments end to end: one run from a config name, the papermill reproduction of a table, the book build.

    run_experiment("smnist_tau0.02", seed=42, profile="smoke")          # load data, train, write the record
    reproduce(table_configs(2), seeds=(8, 42, 123), profile="cpu")     # one executed notebook per run, then build
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from compressm import records
from compressm.configs import get_config
from compressm.data import load_dataset, resolve_data_dir
from compressm.errors import CompressmError
from compressm.train import RunResult, run_keys, train

REPO = Path(__file__).resolve().parents[1]
TRAIN_NOTEBOOK = REPO / "book" / "train.ipynb"
RUNS_ENV = "COMPRESSM_RUNS"  # the runs folder the book reads (default: runs/ in the repository)


def runs_root(root: Path | str | None = None) -> Path:
    """The runs folder: the argument, else $COMPRESSM_RUNS, else runs/ in the repository."""
    return Path(root or os.environ.get(RUNS_ENV) or REPO / "runs")


def run_experiment(config_name: str, seed: int, profile: str = "paper", *, out_dir: Path | str | None = None,
                   root: Path | str | None = None, data_dir: Path | str | None = None,
                   overrides: dict | None = None, progress: bool = True) -> RunResult:
    """Train one configuration with one seed and write its record (default runs/<profile>/<config>/seed_<seed>)."""
    config = get_config(config_name, profile, overrides)
    out_dir = Path(out_dir) if out_dir else records.run_dir(runs_root(root), profile, config_name, seed)
    dataset = load_dataset(config.dataset, data_dir, key=run_keys(seed)["split"], val_frac=config.val_frac,
                           limit=config.data_limit)
    return train(config, seed, dataset, out_dir=out_dir, progress=progress, progress_interval_s=30.0)


def _execute_run(notebook: Path, name: str, seed: int, profile: str, out_dir: Path, data_dir) -> str:
    """Execute the training notebook for one run into out_dir; 'complete' or 'failed' (recorded as such)."""
    import papermill as pm

    records.prepare_run_dir(out_dir)
    parameters = {"config": name, "seed": seed, "profile": profile, "out_dir": str(out_dir),
                  "data_dir": str(data_dir)}
    try:
        pm.execute_notebook(str(notebook), str(out_dir / "train.ipynb"), parameters=parameters,
                            kernel_name="python3", progress_bar=False, cwd=str(notebook.parent))
        return "complete"
    except pm.PapermillExecutionError as error:
        if not (out_dir / records.METRICS).exists():
            records.save_failure(out_dir, get_config(name, profile), seed, f"{error.ename}: {error.evalue}")
        return "failed"


def reproduce(configs, seeds, profile: str, *, root: Path | str | None = None, data_dir: Path | str | None = None,
              notebook: Path = TRAIN_NOTEBOOK, jobs: int = 1, build: bool = True) -> pd.DataFrame:
    """Execute the training notebook once per (config, seed) into its run folder, then build the book.

    Complete runs are skipped. A run whose notebook fails is recorded as failed (its executed notebook,
    kept beside the record, shows the error) and is never counted in a table. With jobs > 1, that many
    notebooks run at once, each single-threaded (XLA_FLAGS); it pays only where cores do not share memory
    bandwidth (on the 2-core CPU that made the committed runs it gained nothing). Compilations are
    cached on disk ($JAX_COMPILATION_CACHE_DIR, default ~/.cache/compressm/jax) across runs.
    Returns one row per run.
    """
    root = runs_root(root).resolve()
    data_dir = resolve_data_dir(data_dir).resolve()  # notebooks run in book/: relative paths would move
    for name in configs:
        get_config(name, profile)  # fail on a bad name or profile before any work
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "compressm" / "jax"))
    if jobs > 1:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    outcomes = {}
    todo = []
    for name in configs:
        for seed in seeds:
            out_dir = records.run_dir(root, profile, name, seed)
            if records.is_complete(out_dir):
                outcomes[name, seed] = ("skipped (complete)", out_dir)
            else:
                todo.append((name, seed, out_dir))
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(total=len(todo), desc="runs", unit="run") as bar:
        futures = {pool.submit(_execute_run, notebook, name, seed, profile, out_dir, data_dir): (name, seed, out_dir)
                   for name, seed, out_dir in todo}
        for future in as_completed(futures):
            name, seed, out_dir = futures[future]
            outcomes[name, seed] = (future.result(), out_dir)
            bar.set_postfix_str(f"{name} seed {seed}: {outcomes[name, seed][0]}")
            bar.update()
    if build:
        build_book(root)
    rows = [(name, seed, *outcomes[name, seed]) for name in configs for seed in seeds]
    return pd.DataFrame([(n, s, status, str(path)) for n, s, status, path in rows],
                        columns=["config", "seed", "status", "path"])


def build_book(root: Path | str | None = None, output: Path | str | None = None) -> Path:
    """Build the Jupyter Book (warnings are errors) from the runs in `root`; returns the HTML folder."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if jb is None:
        raise CompressmError("jupyter-book is not installed; run: pip install -r requirements.txt")
    env = {**os.environ, RUNS_ENV: str(runs_root(root).resolve())}
    # --all: result pages read runs/, which Sphinx does not track, so every page is re-read and re-executed
    command = [jb, "build", str(REPO), "--all", "-W", "-n", "--keep-going"]
    if output:
        command += ["--path-output", str(output)]
    if subprocess.run(command, env=env).returncode != 0:
        raise CompressmError("the book build failed (see the log above); fix the page it names and re-run")
    return Path(output or REPO) / "_build" / "html"
