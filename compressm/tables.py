"""The book's tables: run aggregates (`results`) as strings, no index column, '-' where there is nothing.

Numbers are joined to their ± and units by no-break spaces so that table cells wrap only between words.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from compressm import stats
from compressm.configs import PROFILES
from compressm.costs import gpu_hours
from compressm.paper import paper_values, role, table_configs
from compressm.records import REPO, runs_root
from compressm.results import (NBSP, RECURRENCE_WORDS, TableView, book_runs, budget_label, config_label,
                               hardware_label, other_cores, relative_run_path, reproduce_command, result_runs,
                               section_settings, setting_rows, variant_label)


def mean_sd(mean: float, sd: float, n: int, digits: int = 1) -> str:
    """'96.3 ± 0.2' (sample std), or '96.3 (1 seed)' where no std exists."""
    if n < 2 or not np.isfinite(sd):
        return f"{mean:.{digits}f} (1{NBSP}seed)"
    return f"{mean:.{digits}f}{NBSP}±{NBSP}{sd:.{digits}f}"


def paper_number(value, std, digits: int | None = 1) -> str:
    """A published number as the paper prints it (`digits` decimals, None for as written; one decimal for the
    std), '-' where it reports none."""
    if value is None:
        return "-"
    text = f"{value:g}" if digits is None else f"{value:.{digits}f}"
    return f"{text}{NBSP}±{NBSP}{std:.1f}" if std is not None else text


def duration(seconds: float) -> str:
    """'42 s', '7.3 min' or '2.4 h'."""
    if not np.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}{NBSP}s"
    return f"{seconds / 60:.1f}{NBSP}min" if seconds < 7200 else f"{seconds / 3600:.1f}{NBSP}h"


def accuracy_table(view: TableView, setting) -> pd.DataFrame:
    """Accuracy and final state size of one setting's configs beside the paper's: the mean over all seeds with its
    95 % interval (from three seeds; 'descriptive' below), the paper's statistic computed on our seeds as the
    authors' script does (`stats.authors_aggregate`), the per-block state size, and the collapsed seeds
    (`stats.collapsed`)."""
    paper = paper_values()
    rows = setting_rows(view, setting)
    out = pd.DataFrame({
        "configuration": rows.config.map(config_label), "seeds": rows.seeds,
        "test accuracy %, mean [95 % interval]": [mean_interval(r.acc_values) for r in rows.itertuples()],
        "sd": [f"{r.acc_sd:.1f}" if r.n_seeds > 1 else "-" for r in rows.itertuples()],
        "paper's statistic on our seeds %": [authors_statistic(r.acc_values) for r in rows.itertuples()],
        "paper %": [paper_number(paper[c]["accuracy"], paper[c]["accuracy_std"]) for c in rows.config],
        "state size N, mean ± sd": [mean_sd(r.size_mean, r.size_sd, r.n_seeds) for r in rows.itertuples()],
        "paper N": [paper_number(paper[c]["state_size"], paper[c]["state_size_std"], None) for c in rows.config],
        "collapsed seeds": [collapsed_label(r.acc_by_seed) for r in rows.itertuples()],
    })
    return out


def mean_interval(values) -> str:
    """'96.3 [95.9, 96.7]' from three seeds up, else '96.3 (descriptive, 2 seeds)'."""
    low, high = stats.mean_interval(values)
    mean = float(np.mean(values))
    if len(values) < 3:
        return f"{mean:.1f} (descriptive, {len(values)}{NBSP}seed{'s' if len(values) > 1 else ''})"
    return f"{mean:.1f} [{low:.1f},{NBSP}{high:.1f}]"


def authors_statistic(values) -> str:
    """'96.9 ± 0.1': the best-3 mean ± the ddof = 0 std over all seeds (`stats.authors_aggregate`); with three
    seeds or fewer the best-3 mean is the mean of all, so the cell says so."""
    top3, sd = stats.authors_aggregate(values)
    return f"{top3:.1f}{NBSP}±{NBSP}{sd:.1f}" + ("" if len(values) > 3 else f" (all {len(values)})")


def collapsed_label(acc_by_seed: dict) -> str:
    """'-' or 'seed 8 (86.7 %)': seeds more than 3 robust sds below the configuration's median (from 5 seeds)."""
    if len(acc_by_seed) < 5:
        return "-"
    seeds, values = zip(*sorted(acc_by_seed.items()))
    flags = stats.collapsed(values)
    return ", ".join(f"seed {s} ({v:.1f}{NBSP}%)" for s, v, f in zip(seeds, values, flags) if f) or "none"


def timing_table(view: TableView, setting) -> pd.DataFrame:
    """Mean training and wall-clock time per run of one setting's configs, the most CPU other processes took
    meanwhile (cores, mean over a run), and speedups over its full model."""
    paper = paper_values()
    rows = setting_rows(view, setting)
    out = pd.DataFrame({
        "configuration": rows.config.map(config_label), "seeds": rows.seeds,
        "training time per run": rows.train_time_s.map(duration),
        "wall-clock per run": rows.wall_time_s.map(duration),
        "other processes (cores)": rows.other_cores_values.map(most_cores_label),
        "speedup over the full model": [f"{s:.2f}x" if np.isfinite(s) else "-" for s in rows.speedup],
        "paper speedup (GPU)": [f"{paper[c]['speedup']:.2f}x" if paper[c]["speedup"] else "-" for c in rows.config],
    })
    reported = [paper[c]["speedup"] for c in table_configs(view.table) if role(c) != "baseline"]
    return out if any(reported) else out.drop(columns="paper speedup (GPU)")


def published_table(table: int) -> pd.DataFrame:
    """The paper's values for a table's configs: accuracy, state size and speedup, '-' where it reports none."""
    paper = paper_values()
    names = table_configs(table)
    return pd.DataFrame({
        "configuration": [config_label(c) for c in names],
        "paper accuracy %": [paper_number(paper[c]["accuracy"], paper[c]["accuracy_std"]) for c in names],
        "paper N": [paper_number(paper[c]["state_size"], paper[c]["state_size_std"], None) for c in names],
        "paper speedup (GPU)": [f"{paper[c]['speedup']:.2f}x" if paper[c]["speedup"] else "-" for c in names],
    })


def section_outputs(view: TableView, paper_budget: bool) -> list:
    """What a results page shows for the settings at the paper's budget or at shorter budgets: per setting, its
    label, the accuracy table and the timing table; or the command that makes the missing runs."""
    from IPython.display import Markdown

    settings = section_settings(view, paper_budget)
    if settings.empty:
        profile = "paper" if paper_budget else "cpu"
        what = "at the paper's budget" if paper_budget else "at a shorter budget"
        return [Markdown(f"No runs {what} yet. Make them with `{reproduce_command(view.table, profile)}`.")]
    outputs = []
    for _, setting in settings.iterrows():
        outputs += [Markdown(f"**{setting.label}**. Accuracy and final state size:"),
                    styled(accuracy_table(view, setting)),
                    Markdown("Time per run (training: steps and recompilations; wall-clock: everything):"),
                    styled(timing_table(view, setting))]
    return outputs


def provenance(view: TableView) -> pd.DataFrame:
    """What the table is built from, per profile, variant and config: seeds shown, seeds not counted (failed,
    unfinished), commits and hardware. Plumbing checks are left out."""
    runs = view.runs[~view.runs.plumbing]
    columns = ["profile", "variant", "configuration", "seeds shown", "not counted", "commits", "hardware"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (profile, variant, config), g in runs.groupby(["profile", "variant", "config"], sort=True):
        rows.append([profile, variant_label(variant), config,
                     " ".join(map(str, sorted(g[g.finished].seed))) or "-",
                     ", ".join(f"{r.seed} ({r.status})" for r in g[~g.finished].itertuples()) or "-",
                     " ".join(sorted({str(c)[:7] for c in g.commit.dropna()})),
                     "; ".join(sorted(hardware_label(h) for h in set(g.hardware.dropna())))])
    return pd.DataFrame(rows, columns=columns)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown (GFM) table, cells as given (so they may hold links or roles)."""
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def styled(frame: pd.DataFrame, precision: int = 2):
    """A table as the book shows it: numbers to `precision` digits, '-' for missing values, text escaped (so
    '<profile>' stays visible), no index column, and a 'hardware' column in words (`hardware_label`)."""
    if "hardware" in frame.columns:
        frame = frame.assign(hardware=frame.hardware.map(hardware_label))
    return frame.style.format(precision=precision, na_rep="-", escape="html").hide(axis="index")


def run_card(run: pd.Series, metrics: dict) -> pd.DataFrame:
    """One run in a two-column table: what it is, where it ran, what it reached and how long it took."""
    summary = metrics["summary"]
    rows = [("configuration", f"{config_label(run.config)} ({run.config})"), ("seed", run.seed),
            ("budget", budget_label(run.profile, run.steps, run.config)),
            ("hardware", f"{hardware_label(run.hardware)}, {RECURRENCE_WORDS.get(run.recurrence, run.recurrence)}"),
            ("variant", variant_label(run.variant)),
            ("test accuracy (model selected by validation)", f"{100 * summary['test_acc']:.2f} % at step "
                                                             f"{summary['best_step']}"),
            ("final state sizes", " ".join(map(str, summary["final_state_sizes"]))),
            ("reductions", str(len(metrics["reductions"]))),
            ("training time", duration(summary["train_time_s"])), ("wall-clock", duration(summary["wall_time_s"])),
            ("library commit", str(run.commit)[:7]), ("record", relative_run_path(run.path))]
    return pd.DataFrame(rows, columns=["", "value"])


def reduction_table(metrics: dict) -> pd.DataFrame:
    """A run's reductions: step, block, size before and after, the Hankel energy discarded and the error bound."""
    events = pd.DataFrame(metrics["reductions"])
    if events.empty:
        return pd.DataFrame(columns=["step", "block", "size before", "size after", "energy discarded",
                                     "error bound"])
    return pd.DataFrame({"step": events.step, "block": events.block, "size before": events.old_size,
                         "size after": events.new_size, "energy discarded": events.discarded_energy,
                         "error bound": events.error_bound})


def notebook_index(root: Path | str | None = None, link=None) -> pd.DataFrame:
    """Every result run (finished, not a plumbing check) and its executed notebook: group (profile and variant),
    configuration, seed, test accuracy, and `executed notebook`: `link(path relative to the repository)` for a
    notebook inside the repository, else its path under the runs folder, or a note where the run has none."""
    runs = result_runs(book_runs(root)).sort_values(["profile", "variant", "config", "seed"])
    root = runs_root(root).resolve()
    rows = []
    for run in runs.itertuples():
        notebook = Path(run.path).resolve() / "train.ipynb"
        if not notebook.is_file():
            shown = "none (made with the command line)"
        elif link and notebook.is_relative_to(REPO):
            shown = link(str(notebook.relative_to(REPO)))
        else:
            shown = str(Path("runs") / notebook.relative_to(root))
        rows.append([f"{run.profile} profile · {variant_label(run.variant)}", run.config, run.seed,
                     f"{100 * run.test_acc:.1f}", shown])
    return pd.DataFrame(rows, columns=["group", "configuration", "seed", "test accuracy %", "executed notebook"])


def notebook_markdown(root: Path | str | None = None, link=None) -> str:
    """`notebook_index` as Markdown: a bold line per group, then its table."""
    index = notebook_index(root, link)
    if index.empty:
        return "No runs yet."
    return "\n\n".join(f"**{group}**\n\n{markdown_table(rows.drop(columns='group'))}"
                         for group, rows in index.groupby("group", sort=False))


def cores_label(cores: float) -> str:
    """'0.03' (CPU cores that other processes took, on average, while something was timed) or 'not recorded'."""
    return "not recorded" if pd.isna(cores) else f"{cores:.2f}"


def most_cores_label(cores) -> str:
    """The most CPU cores other processes took during any of several timings (`cores_label`), as '≥ 0.40 (1 of 2
    recorded)' where only some timings recorded it."""
    cores = pd.Series(cores, dtype=float)
    recorded = cores.dropna()
    most = cores_label(recorded.max() if len(recorded) else np.nan)
    return f"≥ {most} ({len(recorded)} of {len(cores)} recorded)" if 0 < len(recorded) < len(cores) else most


def bench_provenance(records: pd.DataFrame) -> pd.DataFrame:
    """Benchmark records (`results.load_bench`) per hardware, commit and date: how many, and the most that other
    processes took while one of them ran."""
    rows = [[hardware, commit, date, len(g), most_cores_label(g.other_cores)]
            for (hardware, commit, date), g in records.groupby(["hardware", "commit", "date"])]
    columns = ["hardware", "commit", "date", "measurements", "other processes (cores, at most)"]
    return pd.DataFrame(rows, columns=columns)


def run_times(root: Path | str | None = None) -> pd.DataFrame:
    """Measured time per run, per (profile, hardware, variant, config): mean and fastest wall-clock (the fastest is
    the plan for an idle machine: a mean can hold a run slowed by other work), mean training time, ms/step, and
    the most CPU cores other processes took meanwhile (`results.other_cores`)."""
    runs = result_runs(book_runs(root))
    columns = ["profile", "hardware", "variant", "config", "runs", "wall-clock per run", "fastest run",
               "training time per run", "ms per step", "steps", "other processes (cores)"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (profile, hardware, variant, config), g in runs.groupby(["profile", "hardware", "variant", "config"]):
        rows.append([profile, hardware, variant_label(variant), config, len(g),
                     duration(g.wall_time_s.mean()), duration(g.wall_time_s.min()), duration(g.train_time_s.mean()),
                     f"{1e3 * (g.train_time_s / g.steps).mean():.1f}", int(g.steps.max()),
                     most_cores_label(other_cores(g))])
    return pd.DataFrame(rows, columns=columns)


def run_time_outputs(root: Path | str | None = None) -> list:
    """`run_times` as the Reproducing page shows it: one table of configs per (profile, hardware, variant), each
    under its label, the paper's budget first (profiles in `PROFILES` order)."""
    from IPython.display import Markdown

    times = run_times(root)
    if times.empty:
        return [Markdown("No finished runs yet.")]
    order = {name: i for i, name in enumerate(PROFILES)}
    return grouped_tables(times, ["profile", "hardware", "variant"],
                          lambda profile, hardware, variant:
                          f"**`{profile}` profile · {hardware_label(hardware)} · {variant}**",
                          sort=lambda key: (order.get(key[0], len(order)), key))


def grouped_tables(frame: pd.DataFrame, by: list[str], heading, sort=None) -> list:
    """One table per group of `frame` over the columns `by` (without them), under its `heading(*key)` in
    Markdown; groups in order of appearance, or of `sort(key)`."""
    from IPython.display import Markdown

    groups = list(frame.groupby(by, sort=False))
    outputs = []
    for key, rows in sorted(groups, key=lambda item: sort(item[0])) if sort else groups:
        outputs += [Markdown(heading(*key)), styled(rows.drop(columns=by))]
    return outputs


def gpu_hours_outputs(table: int, root: Path | str | None = None) -> list:
    """`costs.gpu_hours` as the Reproducing page shows it: per GPU, the estimated total in a sentence and a table
    of the table's configs."""
    from IPython.display import Markdown

    hours = gpu_hours(table, root)
    if hours.empty:
        return [Markdown(f"**Table {table}**: no GPU records in this runs folder yet.")]
    outputs = []
    for hardware, g in hours.groupby("hardware"):
        outputs += [Markdown(f"**Table {table}** on {hardware_label(hardware)}: about {g.estimate_total_h.sum():.0f}"
                             f" GPU-hours of training steps for its {len(g)} configurations x {g.seeds.iloc[0]}"
                             f" seeds of {g.steps.max() // 1000}k steps (estimate)."),
                    styled(pd.DataFrame({"config": g.config, "ms per step": g.ms_per_step,
                                         "hours per run (estimate)": g.estimate_h,
                                         "hours, all seeds (estimate)": g.estimate_total_h,
                                         "hours per run (measured)": g.measured_h,
                                         "measured runs": g.measured_runs.replace("", np.nan)}))]
    return outputs


def run_phases(profile: str = "paper", root: Path | str | None = None) -> pd.DataFrame:
    """Wall-clock time per phase of each finished run of a profile (config with its overrides in brackets):
    training (steps and recompilations), evaluation (validation, checkpoints, test), reductions, the rest, in
    all; what else ran (`cores_label`) and the steps a run was resumed from."""
    runs = result_runs(book_runs(root))
    runs = runs[runs.profile == profile].sort_values(["config", "seed"]).reset_index(drop=True)
    rest = runs.wall_time_s - runs.train_time_s - runs.eval_time_s - runs.reduction_time_s
    return pd.DataFrame({
        "config": runs.config + ["" if not o else f" ({o})" for o in runs.overrides], "seed": runs.seed,
        "hardware": runs.hardware,
        "training": runs.train_time_s.map(duration), "evaluation": runs.eval_time_s.map(duration),
        "reductions": runs.reduction_time_s.map(duration), "rest": rest.map(duration),
        "wall-clock": runs.wall_time_s.map(duration),
        "others (cores)": other_cores(runs).map(cores_label),
        "resumed at": ["not recorded" if r is None else ", ".join(map(str, r)) or "-" for r in runs.resumes]})


def run_phase_outputs(profile: str = "paper", root: Path | str | None = None) -> list:
    """`run_phases` as the Speed page shows it: one table per hardware (in name order), under its name."""
    from IPython.display import Markdown

    phases = run_phases(profile, root)
    if phases.empty:
        return [Markdown(f"No finished `{profile}`-profile run yet.")]
    return grouped_tables(phases, ["hardware"], lambda hardware: f"**{hardware_label(hardware)}**",
                          sort=lambda key: key)


def total_time_note(profile: str, root: Path | str | None = None) -> str:
    """'The 21 cpu-profile runs took 4.1 hours of run time together.' ('' without such runs)."""
    runs = result_runs(book_runs(root))
    runs = runs[runs.profile == profile]
    if runs.empty:
        return ""
    return (f"The {len(runs)} `{profile}`-profile runs took {runs.wall_time_s.sum() / 3600:.1f} hours of run time"
            " together.")
