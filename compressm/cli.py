"""Command line: python -m compressm {train, reproduce, bench, check-authors, download, configs}.

Bad input (unknown config or key, out-of-range values, missing data, unwritable output, a run folder that
holds another run or is being written) prints one line `error: ...` and exits with status 2; a run that
diverges prints one line, leaves a failed record and exits with status 1.
"""

import argparse
import sys
from pathlib import Path

import yaml

from compressm.errors import CompressmError, TrainingDiverged, excerpt


_JOB_OPTIONS = ("partition", "gpus", "cpus", "mem_gb", "time_min", "array_parallelism", "sbatch")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (status 2) like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parse_value(text: str):
    """A --set value: int, then float (so 1e-3 is a number), else YAML (true, null, strings; no aliases)."""
    from compressm.configs import load_yaml

    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return load_yaml(text)
    except yaml.YAMLError as error:
        reason = " ".join(str(getattr(error, "problem", None) or "not a value").split())
        raise CompressmError(f"--set value {excerpt(text)} is not a number, word or YAML value ({reason})") from None


def _overrides(pairs: list[str]) -> dict:
    """['reduction.tau=0.1', 'steps=100'] -> {'reduction.tau': 0.1, 'steps': 100}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CompressmError(f"--set expects KEY=VALUE (e.g. reduction.tau=0.05), got {excerpt(pair)}")
        out[key] = _parse_value(value)
    return out


def _train(args) -> int:
    from compressm.experiment import run_experiment

    result = run_experiment(args.config, args.seed, args.profile, out_dir=args.out, root=args.runs,
                            data_dir=args.data_dir, overrides=_overrides(args.set), progress=not args.no_progress)
    summary = result.metrics["summary"]
    if result.already_complete:
        print("already complete, nothing done: ", end="")
    print(f"test accuracy {summary['test_acc']:.4f} at best validation; state sizes {summary['final_state_sizes']};"
          f" {summary['wall_time_s']:.0f} s")
    return 0


def _job_options(args):
    """JobOptions from the cluster options given (None: not given); a one-line error if they would go unused."""
    from compressm.cluster import JobOptions

    given = {name: getattr(args, name) for name in _JOB_OPTIONS if getattr(args, name) is not None}
    if args.executor == "local":
        unused = [*given, *(name for name in ("wait", "job_dir") if getattr(args, name))]
        if unused:
            names = [f"--{name.replace('_', '-')}" for name in unused]
            raise CompressmError(f"{', '.join(names)}: options for jobs; add --executor slurm (or submitit-local)")
        return None
    if args.jobs is not None:
        raise CompressmError("--jobs applies to --executor local; a scheduler runs jobs at once (--array-parallelism)")
    if "sbatch" in given:
        given["sbatch"] = tuple(given["sbatch"])
    return JobOptions(**given)


def _sbatch_option(text: str) -> tuple[str, str | bool]:
    """'account=lab' -> ('account', 'lab'); 'exclusive' -> ('exclusive', True), a flag."""
    key, sep, value = text.partition("=")
    if not key or key.startswith("-") or (sep and not value):
        raise argparse.ArgumentTypeError(f"--sbatch expects KEY=VALUE or KEY (e.g. account=lab), got {excerpt(text)}")
    return key, value if sep else True


def _reproduce(args) -> int:
    from compressm.configs import get_config
    from compressm.experiment import reproduce, reproduce_jobs
    from compressm.paper import SEEDS, table_configs, table_of

    if (args.table is None) == (not args.config):
        raise CompressmError("give either --table 2|3 or --config NAME [NAME ...]")
    configs = table_configs(args.table) if args.table else args.config
    for name in configs:  # an unknown name, before its seeds are looked up in the paper's tables
        get_config(name)
    seeds = args.seeds or SEEDS[args.table or table_of(configs[0])]
    options = _job_options(args)
    if args.executor == "local":
        outcome = reproduce(configs, seeds, args.profile, root=args.runs, data_dir=args.data_dir,
                            jobs=1 if args.jobs is None else args.jobs, build=not args.no_book)
    else:
        outcome = reproduce_jobs(configs, seeds, args.profile, args.executor, options=options, root=args.runs,
                                 data_dir=args.data_dir, job_dir=args.job_dir, wait=args.wait,
                                 build=not args.no_book)
    print(outcome.drop(columns=["path", "log"], errors="ignore").to_string(index=False))
    if "log" in outcome and outcome.job.notna().any():
        print(f"job logs: {Path(outcome.log.dropna().iloc[0]).parent}/<job>_0_log.out and _log.err")
    return 0 if (outcome.status != "failed").all() else 1


def _bench(args) -> int:
    from compressm.bench import run_benchmarks

    if args.repeats < 1:
        raise CompressmError(f"--repeats must be at least 1, got {args.repeats}")
    run_benchmarks(args.only, out_dir=args.out, repeats=args.repeats, authors=args.authors)
    return 0


def _check_authors(args) -> int:
    from compressm.authors_check import run_check, summary_lines

    record, path = run_check(args.authors, data_dir=args.data_dir, root=args.runs)
    print("\n".join(summary_lines(record)) + f"\nrecord: {path}")
    return 0 if record["passed"] else 1


def _download(args) -> int:
    from compressm.data import download

    print(f"{args.dataset} is in {download(args.dataset, args.data_dir)}")
    return 0


def _configs(args) -> int:
    from compressm.configs import PROFILES, config_names

    print("configs: " + " ".join(config_names()))
    for profile in PROFILES.values():
        print(f"profile {profile.name}: {profile.description}")
    return 0


def parser() -> argparse.ArgumentParser:
    from compressm.cluster import EXECUTORS, JobOptions

    defaults = JobOptions()
    p = _Parser(prog="python -m compressm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(q, data=True):
        q.add_argument("--profile", default="paper", help="paper | cpu | smoke (see `configs`)")
        q.add_argument("--runs", default=None, help="runs folder (default: $COMPRESSM_RUNS or runs/)")
        if data:
            q.add_argument("--data-dir", default=None, help="data folder (default: $COMPRESSM_DATA or ./data)")

    q = sub.add_parser("train", help="train one configuration and write its run record (the same command resumes"
                       " an unfinished run)")
    q.add_argument("config", help="config name, e.g. smnist_tau0.02 (see `configs`)")
    q.add_argument("--seed", type=int, required=True)
    q.add_argument("--out", default=None,
                   help="run folder (default: <runs>/<profile>/<config>/seed_<seed>, <config>@<overrides> with --set)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. steps=100")
    q.add_argument("--no-progress", action="store_true")
    common(q)
    q.set_defaults(func=_train)

    q = sub.add_parser("reproduce", help="run a paper table (or configs) through the training notebook (resuming"
                       " unfinished runs), here or as cluster jobs; build the book")
    q.add_argument("--table", type=int, choices=(2, 3), default=None)
    q.add_argument("--config", nargs="+", default=None)
    q.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the paper's seeds")
    q.add_argument("--no-book", action="store_true", help="do not build the book afterwards")
    common(q)
    q.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default): run the notebooks here; slurm: submit one job per run that is not"
                   " complete, queued or running (a job array, requeued on preemption or timeout, resuming from"
                   " its checkpoint) and return; the same command later reports each run's status, resubmits"
                   " runs whose job ended unfinished, and builds the book once all are complete; submitit-local:"
                   " the same jobs as processes on this machine")
    q.add_argument("--jobs", type=int, default=None, help="local: runs at once, each single-threaded (default 1)")
    jobs = q.add_argument_group("jobs (--executor slurm or submitit-local); defaults fit one sCIFAR run on a GPU")
    jobs.add_argument("--partition", default=None, help="slurm partition (default: the cluster's default)")
    jobs.add_argument("--gpus", type=int, default=None, help=f"GPUs per job (default {defaults.gpus})")
    jobs.add_argument("--cpus", type=int, default=None, help=f"CPUs per job (default {defaults.cpus})")
    jobs.add_argument("--mem-gb", type=int, default=None, help=f"memory per job in GB (default {defaults.mem_gb})")
    jobs.add_argument("--time-min", type=int, default=None,
                      help=f"time limit per job in minutes (default {defaults.time_min}); a run that outlives it"
                      " is requeued and resumes")
    jobs.add_argument("--array-parallelism", type=int, default=None,
                      help=f"slurm: jobs of the array running at once (default {defaults.array_parallelism})")
    jobs.add_argument("--sbatch", type=_sbatch_option, action="append", default=None, metavar="KEY=VALUE",
                      help="another sbatch option, repeatable: --sbatch account=lab --sbatch constraint=h100")
    jobs.add_argument("--job-dir", default=None, help="job pickles and logs (default: <runs>/jobs)")
    jobs.add_argument("--wait", action="store_true", help="wait for the jobs to end (then build the book)")
    q.set_defaults(func=_reproduce)

    q = sub.add_parser("bench", help="measure step, streaming and reduction speed; write JSON records")
    q.add_argument("--only", nargs="+", default=None, help="benchmark names (default: all for this backend)")
    q.add_argument("--out", default=None,
                   help="folder for the records (default: bench/<hardware> in $COMPRESSM_RUNS or runs/)")
    q.add_argument("--repeats", type=int, default=5)
    q.add_argument("--authors", default=None, metavar="PATH",
                   help="a checkout of camail-official/compressm: time their training step beside ours")
    q.set_defaults(func=_bench)

    q = sub.add_parser("check-authors", help="train 20 steps, then reduce, beside the authors' run path (their"
                       " checkout, own interpreter) on the same parameters and MNIST batches; write"
                       " <runs>/fidelity/check_authors.json; exit 1 if they disagree")
    q.add_argument("--authors", required=True, metavar="PATH",
                   help="a checkout of camail-official/compressm at release/v1.0.0")
    q.add_argument("--runs", default=None, help="runs folder (default: $COMPRESSM_RUNS or runs/)")
    q.add_argument("--data-dir", default=None, help="data folder (default: $COMPRESSM_DATA or ./data)")
    q.set_defaults(func=_check_authors)

    q = sub.add_parser("download", help="download a data set through torchvision (needs a network)")
    q.add_argument("dataset", choices=("smnist", "scifar"))
    q.add_argument("--data-dir", default=None)
    q.set_defaults(func=_download)

    q = sub.add_parser("configs", help="list configs and profiles")
    q.set_defaults(func=_configs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CompressmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
