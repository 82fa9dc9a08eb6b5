"""Command line: python -m compressm {train, reproduce, bench, download, configs}.

Bad input (unknown config or key, out-of-range values, missing data, unwritable output, a run folder that
holds another run or is being written) prints one line `error: ...` and exits with status 2; a run that
diverges prints one line, leaves a failed record and exits with status 1.
"""

import argparse
import sys

import yaml

from compressm.errors import CompressmError, TrainingDiverged


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (status 2) like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parse_value(text: str):
    """A --set value: int, then float (so 1e-3 is a number), else YAML (true, null, strings)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        reason = " ".join(str(getattr(error, "problem", None) or "not a value").split())
        raise CompressmError(f"--set value {text!r} is not a number, word or YAML value ({reason})") from None


def _overrides(pairs: list[str]) -> dict:
    """['reduction.tau=0.1', 'steps=100'] -> {'reduction.tau': 0.1, 'steps': 100}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CompressmError(f"--set expects KEY=VALUE (e.g. reduction.tau=0.05), got {pair!r}")
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


def _reproduce(args) -> int:
    from compressm.experiment import reproduce
    from compressm.paper import SEEDS, table_configs, table_of

    if (args.table is None) == (not args.config):
        raise CompressmError("give either --table 2|3 or --config NAME [NAME ...]")
    configs = table_configs(args.table) if args.table else args.config
    seeds = args.seeds or SEEDS[args.table or table_of(configs[0])]
    outcome = reproduce(configs, seeds, args.profile, root=args.runs, data_dir=args.data_dir, jobs=args.jobs,
                        build=not args.no_book)
    print(outcome.drop(columns="path").to_string(index=False))
    return 0 if (outcome.status != "failed").all() else 1


def _bench(args) -> int:
    from compressm.bench import run_benchmarks

    if args.repeats < 1:
        raise CompressmError(f"--repeats must be at least 1, got {args.repeats}")
    run_benchmarks(args.only, out_dir=args.out, repeats=args.repeats, authors=args.authors)
    return 0


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
                       " unfinished runs), build the book")
    q.add_argument("--table", type=int, choices=(2, 3), default=None)
    q.add_argument("--config", nargs="+", default=None)
    q.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the paper's seeds")
    q.add_argument("--jobs", type=int, default=1, help="runs at once, each single-threaded (default 1)")
    q.add_argument("--no-book", action="store_true", help="do not build the book afterwards")
    common(q)
    q.set_defaults(func=_reproduce)

    q = sub.add_parser("bench", help="measure step, streaming and reduction speed; write JSON records")
    q.add_argument("--only", nargs="+", default=None, help="benchmark names (default: all for this backend)")
    q.add_argument("--out", default=None,
                   help="folder for the records (default: bench/<hardware> in $COMPRESSM_RUNS or runs/)")
    q.add_argument("--repeats", type=int, default=5)
    q.add_argument("--authors", default=None, metavar="PATH",
                   help="a checkout of camail-official/compressm: time their training step beside ours")
    q.set_defaults(func=_bench)

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
