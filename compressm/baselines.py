"""The paper's baselines beside CompreSSM, for the Baselines page: which config each method runs at which size,
our runs aggregated per method, the published numbers labelled by source, and a verdict per comparison.

    ours = aggregate(run_table())        # one row per (profile, hardware, method, size)
    paper = published()                  # the paper's side, each row with its source
    verdicts(ours)                       # per comparison: accuracy difference, 95 % interval, time ratio

Accuracy over seeds is the book's (`stats.summarize`: the mean with the sample std, the paper's top-3 mean beside
it); the verdicts use Welch's 95 % interval for a difference of means (`stats.welch_difference`), which needs two
seeds on each side. Runs are those the other results pages count (`results.result_runs`: complete, in place, not
a smoke check), of the packaged configs only (no @overrides variant). Training time is `train_time_s` (steps and recompilations); a distillation run's time is its
pipeline's, its teacher's training plus its own, as the paper counts it. Speed is the full model's mean time
(same profile and hardware) over a method's.
"""

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from compressm import records, stats
from compressm.configs import get_config
from compressm.paper import SOURCE_TAGS, baseline_values, paper_table, paper_values
from compressm.results import NBSP, bench_root, book_runs, result_runs, shown_note, shown_runs
from compressm.tables import mean_sd

METHODS = {"compressm": "CompreSSM", "scratch": "from scratch", "distillation": "distillation",
           "regularisation": "Hankel regularisation"}


class Size(NamedTuple):
    """One target state size of a data set and the config each method runs there."""

    dataset: str
    size: int
    configs: dict[str, str]  # method -> config


SIZES = (
    Size("smnist", 47, {"compressm": "smnist_tau0.01", "scratch": "smnist_scratch_n47",
                        "distillation": "smnist_distill_n47"}),
    Size("smnist", 28, {"compressm": "smnist_tau0.02", "scratch": "smnist_scratch_n28",
                        "distillation": "smnist_distill_n28", "regularisation": "smnist_hankel_n28"}),
    Size("smnist", 13, {"compressm": "smnist_tau0.04", "scratch": "smnist_scratch_n13",
                        "distillation": "smnist_distill_n13"}),
    Size("scifar", 58, {"compressm": "scifar_tau0.15", "scratch": "scifar_scratch_n57",
                        "distillation": "scifar_distill_n58"}),
    Size("scifar", 93, {"compressm": "scifar_tau0.10", "scratch": "scifar_scratch_n93",
                        "distillation": "scifar_distill_n93"}),
    Size("scifar", 126, {"distillation": "scifar_distill_n126"}),
    Size("scifar", 160, {"compressm": "scifar_tau0.05", "scratch": "scifar_scratch_n161",
                         "distillation": "scifar_distill_n160"}),
)
FULL = {"smnist": paper_table(2).baseline, "scifar": paper_table(3).baseline}  # the full model of each data set


def placement(config: str) -> tuple[str, str, int]:
    """(data set, method, target size) of a config on this page."""
    for size in SIZES:
        for method, name in size.configs.items():
            if name == config:
                return size.dataset, method, size.size
    raise KeyError(f"{config} is not a config of the Baselines page")


def page_configs() -> list[str]:
    """Every config the page reads: the full models and each method's configs."""
    return [*FULL.values(), *(name for size in SIZES for name in size.configs.values())]


# ----------------------------------------------------------------------------------------------------------
# Our runs
# ----------------------------------------------------------------------------------------------------------
RUN_COLUMNS = ["profile", "hardware", "dataset", "method", "size", "config", "seed", "test_acc", "state_size",
               "train_time_s", "teacher_time_s", "time_s", "teacher", "path"]


def _teacher_time(root, metrics: dict) -> tuple[float, str]:
    """A distillation record's teacher: (its train_time_s, 'config seed N') from the teacher's record under `root`;
    NaN time and a reason if that record is gone or no longer the one the student learned from."""
    identity = metrics["teacher"]
    folder = records.run_dir(root, get_config(identity["config"], identity["profile"]), identity["seed"])
    name = f"{identity['config']} seed {identity['seed']}"
    if not records.is_complete(folder):
        return float("nan"), f"{name} (record missing)"
    from compressm.distill import identity_of  # distill imports the model; the page's other readers need not

    if identity_of(folder, get_config(identity["config"], identity["profile"]), identity["seed"]) != identity:
        return float("nan"), f"{name} (record replaced since)"
    return float(records.load_metrics(folder)["summary"]["train_time_s"]), name


def run_table(root=None) -> pd.DataFrame:
    """One row per run the page shows (`results.shown_runs`) of the page's configs: RUN_COLUMNS, accuracy in %,
    time_s the pipeline's (teacher_time_s + train_time_s for distillation, else train_time_s)."""
    root = records.runs_root(root)
    runs = shown_runs(book_runs(root), page_configs())
    rows = []
    for run in runs.itertuples():
        is_full = run.config in FULL.values()
        dataset, method, size = (get_config(run.config).dataset, "full", None) if is_full else placement(run.config)
        teacher_time, teacher = 0.0, ""
        if method == "distillation":
            teacher_time, teacher = _teacher_time(root, records.load_metrics(run.path))
        rows.append({"profile": run.profile, "hardware": run.hardware, "dataset": dataset, "method": method,
                     "size": size, "config": run.config, "seed": run.seed, "test_acc": 100 * run.test_acc,
                     "state_size": run.mean_state_size, "train_time_s": run.train_time_s,
                     "teacher_time_s": teacher_time, "time_s": run.train_time_s + teacher_time, "teacher": teacher,
                     "path": run.path})
    numeric = ["test_acc", "state_size", "train_time_s", "teacher_time_s", "time_s"]
    return pd.DataFrame(rows, columns=RUN_COLUMNS).astype({column: float for column in numeric} | {"size": "Int64"})


def setting_note(root=None) -> str:
    """`results.shown_note` for the page's configs: which of them show runs of an earlier setting."""
    return shown_note(shown_runs(book_runs(root), page_configs()))


AGG_COLUMNS = ["profile", "hardware", "dataset", "method", "size", "config", "n", "seeds", "acc_mean", "acc_sd",
               "acc_top3", "size_mean", "time_s", "speed"]


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (profile, hardware, config) of `run_table`'s rows: n, seeds, acc_mean +- acc_sd and acc_top3
    (`stats.summarize`), size_mean, time_s (mean pipeline time) and speed (the same profile and hardware's full
    model's mean time / time_s)."""
    rows = []
    for (profile, hardware, config), group in runs.groupby(["profile", "hardware", "config"], sort=False):
        summary = stats.summarize(group.test_acc)
        first = group.iloc[0]
        rows.append({"profile": profile, "hardware": hardware, "dataset": first.dataset, "method": first.method,
                     "size": first["size"], "config": config, "n": summary.n,
                     "seeds": " ".join(map(str, sorted(group.seed))), "acc_mean": summary.mean,
                     "acc_sd": summary.sd, "acc_top3": summary.top3,
                     "size_mean": float(group.state_size.mean()), "time_s": float(group.time_s.mean())})
    numeric = ["acc_mean", "acc_sd", "acc_top3", "size_mean", "time_s"]
    agg = pd.DataFrame(rows, columns=AGG_COLUMNS[:-1]).astype({column: float for column in numeric} | {"size": "Int64"})
    full = agg[agg.method == "full"].set_index(["profile", "hardware", "dataset"]).time_s
    keys = pd.MultiIndex.from_frame(agg[["profile", "hardware", "dataset"]])
    return agg.assign(speed=full.reindex(keys).to_numpy(dtype=float) / agg.time_s.to_numpy(dtype=float))


# ----------------------------------------------------------------------------------------------------------
# The paper's side
# ----------------------------------------------------------------------------------------------------------
PUBLISHED_COLUMNS = ["source", "table", "dataset", "method", "size", "config", "n", "accuracy", "accuracy_std",
                     "state_size", "speed"]


def published() -> pd.DataFrame:
    """The paper's numbers for the page's comparisons, one row each with its source (`paper.SOURCES`): CompreSSM and
    from-scratch rows of Tables 2 and 3 (paper_values.yaml), and the baselines' rows (its `baselines:` section;
    the authors' per-seed accuracies aggregated as the paper does, the top-3 mean, with the sample std)."""
    rows = []
    values = paper_values()
    for size in SIZES:
        for method in ("compressm", "scratch"):
            name = size.configs.get(method)
            if name and values[name]["accuracy"] is not None:
                p = values[name]
                rows.append({"source": "paper", "table": 2 if size.dataset == "smnist" else 3,
                             "dataset": size.dataset, "method": method, "size": size.size, "config": name,
                             "n": None, "accuracy": p["accuracy"], "accuracy_std": p["accuracy_std"],
                             "state_size": p["state_size"], "speed": p["speedup"]})
    for entry in baseline_values():
        seeds = stats.summarize(entry["seeds"]) if "seeds" in entry else None
        rows.append({"source": entry["source"], "table": entry.get("table"), "dataset": entry["dataset"],
                     "method": entry["method"], "size": entry["state_size"], "config": None,
                     "n": seeds.n if seeds else None, "accuracy": seeds.top3 if seeds else entry["accuracy"],
                     "accuracy_std": seeds.sd if seeds else None,
                     "state_size": entry["state_size"], "speed": entry.get("speed")})
    return pd.DataFrame(rows, columns=PUBLISHED_COLUMNS).astype({"table": "Int64", "n": "Int64"})


def _paper_cell(rows: pd.DataFrame) -> str:
    """The paper's numbers for one (data set, size, method), each with its source: '79.4 at N = 57, 0.55x
    (secondary, Table 7); ...', or '-'."""
    cells = []
    for r in rows.itertuples():
        std = f" ± {r.accuracy_std:.1f}" if pd.notna(r.accuracy_std) else ""
        speed = f", {r.speed:.2f}x" if pd.notna(r.speed) else ""
        where = {"paper": f"paper, Table {r.table}", "authors": f"authors' code, {r.n} seeds",
                 "secondary": f"secondary, Table {r.table}"}[r.source]
        cells.append(f"{r.accuracy:.1f}{std} at N = {r.state_size:g}{speed} ({where})")
    return "; ".join(cells) or "-"


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per data set, target size and method (and profile of ours): our accuracy (mean ± sample std over
    seeds), final size and speed relative to the full model, beside the paper's numbers with their sources."""
    rows = []
    for size in SIZES:
        for method, config in size.configs.items():
            near = paper[(paper.dataset == size.dataset) & (paper.method == method)
                         & ((paper["size"] - size.size).abs() <= 1)]
            mine = ours[ours.config == config]
            for _, r in (mine.iterrows() if len(mine) else [(None, None)]):
                rows.append({
                    "data": size.dataset, "N": size.size, "method": METHODS[method], "config": config,
                    "ours: profile": r.profile if r is not None else "-",
                    "ours: accuracy %": "-" if r is None else (f"{mean_sd(r.acc_mean, r.acc_sd, r.n)} ({r.n} seeds)"
                                                               if r.n > 1 else mean_sd(r.acc_mean, r.acc_sd, r.n)),
                    "ours: final N": "-" if r is None else f"{r.size_mean:.1f}",
                    "ours: speed": "-" if r is None or not np.isfinite(r.speed) else f"{r.speed:.2f}x",
                    "paper (source)": _paper_cell(near)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------------------
def verdict(difference: stats.Difference, method: str, other: str) -> str:
    """The accuracy verdict of `method` against `other` from mean(method) - mean(other) and its Welch interval
    (`stats.welch_difference`): a side is ahead only where the interval excludes zero."""
    if not difference.tested:
        return "not tested (one seed on a side)"
    if difference.low > 0:
        return f"{METHODS[method]} ahead"
    if difference.high < 0:
        return f"{METHODS[other]} ahead"
    return "no difference resolved"


PAIRS = (("distillation", "compressm"), ("regularisation", "compressm"), ("distillation", "scratch"),
         ("regularisation", "scratch"))
VERDICT_COLUMNS = ["profile", "hardware", "dataset", "size", "method", "against", "seeds", "difference (points)",
                   "95 % interval", "verdict", "time ratio", "paper difference (source)"]


def _paper_difference(paper: pd.DataFrame, dataset: str, size: int, method: str, other: str) -> str:
    """The paper's accuracy difference of `method` against `other` near `size` with its source in words:
    '-1.1 (unverified secondary summary)', '-0.2 (unverified secondary summary, against the paper)' where
    `other`'s number comes from the paper's tables, '-' where the paper has no such pair."""
    rows = paper[(paper.dataset == dataset) & (abs(paper["size"] - size) <= 1)]
    for source in ("secondary", "authors", "paper"):
        a = rows[(rows.method == method) & (rows.source == source)]
        same, tables = (rows[(rows.method == other) & (rows.source == s)] for s in (source, "paper"))
        b = same if len(same) else tables
        if len(a) and len(b):
            against = "" if len(same) else f", against the {SOURCE_TAGS['paper']}"
            return f"{a.accuracy.iloc[0] - b.accuracy.iloc[0]:+.1f} ({SOURCE_TAGS[source]}{against})"
    return "-"


def verdicts(runs: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per profile, hardware, size and pair of `PAIRS` with runs on both sides: the difference of mean test
    accuracies (points), Welch's 95 % interval, the verdict, the ratio of mean (pipeline) training times, and the
    paper's difference with its source (`_paper_difference`)."""
    paper = published() if paper is None else paper
    rows = []
    for (profile, hardware, dataset, size), group in runs[runs.method != "full"].groupby(
            ["profile", "hardware", "dataset", "size"], sort=False):
        for method, other in PAIRS:
            a, b = group[group.method == method], group[group.method == other]
            if a.empty or b.empty:
                continue
            d = stats.welch_difference(a.test_acc, b.test_acc)
            rows.append({"profile": profile, "hardware": hardware, "dataset": dataset, "size": size, "method": method,
                         "against": other, "seeds": f"{len(a)} vs {len(b)}",
                         "difference (points)": round(d.estimate, 2),
                         "95 % interval": f"{d.low:+.1f} to{NBSP}{d.high:+.1f}" if d.tested else "-",
                         "verdict": verdict(d, method, other),
                         "time ratio": round(a.time_s.mean() / b.time_s.mean(), 2),
                         "paper difference (source)": _paper_difference(paper, dataset, size, method, other)})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def ranking_text(table: pd.DataFrame) -> str:
    """Markdown: whether the paper's ranking (CompreSSM more accurate and faster to train than either baseline)
    holds in each verdict of `verdicts` against CompreSSM, or that no comparison has runs yet."""
    against = table[table.against == "compressm"]
    if against.empty:
        return ("No comparison with CompreSSM has runs on both sides yet, so the paper's ranking is not tested here;"
                " the commands under *Our runs* make them.")
    lines = []
    for _, r in against.iterrows():
        accuracy = {"CompreSSM ahead": "holds", "no difference resolved": "is not resolved"}.get(
            r.verdict, "is reversed" if r.verdict.endswith("ahead") else "is untested (one seed)")
        ratio = r["time ratio"]
        speed = f"CompreSSM trains {ratio:.2f}x faster" if ratio > 1 else f"CompreSSM is {1 / ratio:.2f}x slower"
        lines.append(f"- **{r.profile}, {r.dataset}, N = {r['size']}, {METHODS[r.method]}**: on accuracy the ranking"
                     f" {accuracy} ({r['difference (points)']:+.1f} points, 95 % interval {r['95 % interval']});"
                     f" {speed}.")
    return "\n".join(lines)


def missing_commands(profile: str = "cpu", seeds=(8, 42, 123), root=None) -> list[str]:
    """The commands that make the page's sMNIST runs of `profile` missing under the runs folder: teachers first."""
    runs = result_runs(book_runs(root))
    runs = runs[runs.canonical & (runs.profile == profile)]
    done = set(zip(runs.config, runs.seed))
    commands = []
    for names in (list(FULL.values())[:1],
                  [n for s in SIZES if s.dataset == "smnist" for m, n in s.configs.items() if m != "regularisation"],
                  [n for s in SIZES for m, n in s.configs.items() if m == "regularisation"]):
        todo = [n for n in names if any((n, seed) not in done for seed in seeds)]
        if todo:
            commands.append(f"python -m compressm reproduce --config {' '.join(todo)} --profile {profile}"
                            f" --seeds {' '.join(map(str, seeds))}")
    return commands


# ----------------------------------------------------------------------------------------------------------
# The regularised runs: what the truncation cost, and what the penalty costs per step
# ----------------------------------------------------------------------------------------------------------
TRUNCATION_COLUMNS = {"profile": "profile", "seed": "seed", "hsv_weight": "weight λ", "step": "cut at step",
                      "discarded_energy": "energy discarded %", "val_before": "val. % before",
                      "val_after": "val. % after", "val_final": "val. % at the end", "test_acc": "test %",
                      "final_size": "final N"}  # column -> label in the book


def truncations(runs: pd.DataFrame) -> pd.DataFrame:
    """Per regularised run in `run_table`: lambda, the truncation step, the share (%) of Hankel energy it
    discarded (mean over blocks), validation accuracy (%) just before and just after it and at the end of the
    fine-tune, test accuracy (%) of the selected model and the final size."""
    rows = []
    for run in runs[runs.method == "regularisation"].itertuples():
        metrics, config = records.load_metrics(run.path), get_config(run.config, run.profile)
        events = metrics["reductions"]
        step = events[0]["step"] if events else None
        at = next((row for row in metrics["history"] if row["step"] == step), {})
        discarded = np.mean([e["discarded_energy"] for e in events] or [np.nan])
        rows.append({"profile": run.profile, "seed": run.seed, "hsv_weight": f"{config.objective.hsv_weight:g}",
                     "step": step, "discarded_energy": 100 * discarded,
                     "val_before": 100 * at.get("val_acc", np.nan),
                     "val_after": 100 * at.get("val_acc_after_reduction", np.nan),
                     "val_final": 100 * metrics["history"][-1]["val_acc"], "test_acc": run.test_acc,
                     "final_size": int(run.state_size)})
    return pd.DataFrame(rows, columns=list(TRUNCATION_COLUMNS))


def hsv_totals(path, rank: int, block: int = 0) -> pd.DataFrame:
    """From a record's HSV snapshots: per step, the sum of a block's HSVs and the share of it beyond the `rank`
    largest (what a truncation to `rank` states would discard)."""
    hsvs = records.load_hsvs(path)
    rows = []
    for step in records.snapshot_steps(hsvs):
        hsv = hsvs.get(records.hsv_key(step, block))
        if hsv is not None and len(hsv) > rank:
            rows.append({"step": step, "sum": float(hsv.sum()), "beyond": float(hsv[rank:].sum() / hsv.sum())})
    return pd.DataFrame(rows, columns=["step", "sum", "beyond"])


def regularisation_cost(root=None) -> pd.DataFrame:
    """The `regularised_step` benchmark records (`bench.bench_regularised_step`): per hardware and state size,
    the plain and the regularised step (ms), their ratio, and the penalty with its gradient alone (ms)."""
    rows = []
    for path in sorted(bench_root(root).glob("*/regularised_step__*.json")):
        r = json.loads(path.read_text())
        rows.append({"hardware": r["environment"]["hardware"], "N": r["state_size"],
                     "lambda": r["hsv_weight"],
                     "plain step (ms)": 1e3 * r["plain_s"], "regularised step (ms)": 1e3 * r["median_s"],
                     "slowdown": r["slowdown"], "penalty + gradient (ms)": 1e3 * r["penalty_s"],
                     "recurrence": r["recurrence"], "commit": r["environment"]["commit"][:7], "date": r["date"]})
    columns = ["hardware", "N", "lambda", "plain step (ms)", "regularised step (ms)", "slowdown",
               "penalty + gradient (ms)", "recurrence", "commit", "date"]
    return pd.DataFrame(rows, columns=columns)
