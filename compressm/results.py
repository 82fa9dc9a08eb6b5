"""Reading records for the book: run records aggregated into the paper's tables, and benchmark records.

The paper's aggregation: accuracy = mean of the top-3 seeds, +- = standard deviation over all seeds
(population, ddof = 0), state size = per-block mean, then mean +- std over seeds. Training time is
`train_time_s` (training steps and recompilations, evaluation excluded); a speedup divides the baseline's
mean time by a config's, and only between runs of the same profile, hardware and recurrence.
Only counted runs count (`records.load_runs`: complete, and the packaged config of their folder); failed,
unfinished and overridden ones are listed apart.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from compressm import lru, records
from compressm.configs import get_config
from compressm.paper import SEEDS, paper_table, paper_values, scratch_partners, table_configs


def load_table_runs(table: int, root=None) -> pd.DataFrame:
    """All run rows (any status) of a paper table's configs under the runs folder."""
    runs = records.load_runs(records.runs_root(root))
    return runs[runs.config.isin(table_configs(table))].reset_index(drop=True)


def _top3_mean(values: pd.Series) -> float:
    return float(np.sort(values.to_numpy())[::-1][:3].mean())


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (profile, config, hardware, recurrence) of complete runs, aggregated as the paper does.

    Columns: n_seeds, seeds, acc_top3 (%), acc_std (%), size_mean, size_std, train_time_s, wall_time_s, steps.
    """
    done = runs[runs.counted]
    keys = ["profile", "config", "hardware", "recurrence"]
    rows = []
    for key, group in done.groupby(keys, sort=False):
        rows.append(dict(zip(keys, key)) | {
            "n_seeds": len(group),
            "seeds": " ".join(str(s) for s in sorted(group.seed)),
            "acc_top3": 100 * _top3_mean(group.test_acc),
            "acc_std": 100 * float(group.test_acc.std(ddof=0)),
            "size_mean": float(group.mean_state_size.mean()),
            "size_std": float(group.mean_state_size.std(ddof=0)),
            "train_time_s": float(group.train_time_s.mean()),
            "wall_time_s": float(group.wall_time_s.mean()),
            "steps": int(group.steps.max()),
        })
    columns = keys + ["n_seeds", "seeds", "acc_top3", "acc_std", "size_mean", "size_std", "train_time_s",
                      "wall_time_s", "steps"]
    return pd.DataFrame(rows, columns=columns)


def with_speedup(agg: pd.DataFrame, table: int) -> pd.DataFrame:
    """Add `speedup`: the same-profile, same-hardware, same-recurrence baseline's train time / this one's."""
    baseline = agg[agg.config == paper_table(table).baseline]
    base = baseline.set_index(["profile", "hardware", "recurrence"]).train_time_s
    index = pd.MultiIndex.from_frame(agg[["profile", "hardware", "recurrence"]])
    speedup = base.reindex(index).to_numpy(dtype=float) / agg.train_time_s.to_numpy(dtype=float)
    return agg.assign(speedup=speedup)


def table_aggregate(table: int, root=None) -> pd.DataFrame:
    """A paper table's complete runs under the runs folder, aggregated (`aggregate`) with their `speedup`."""
    return with_speedup(aggregate(load_table_runs(table, root)), table)


def budget_note(profile: str, steps: int, config_name: str) -> str:
    """'' for the paper's budget, else e.g. 'cpu profile, 10000 steps of 200k'."""
    paper_steps = get_config(config_name).steps
    if profile == "paper" and steps == paper_steps:
        return ""
    return f"{profile} profile, {steps} steps of {paper_steps // 1000}k"


def results_table(table: int, root=None) -> pd.DataFrame:
    """Our numbers beside the paper's, one row per (profile, config), in the paper's row order.

    Columns: budget, config, seeds, accuracy (top-3 mean +- std, %), paper accuracy, state size, paper size,
    train time (s), speedup, paper speedup, hardware.
    """
    agg = table_aggregate(table, root)
    paper = paper_values()
    order = {name: i for i, name in enumerate(table_configs(table))}
    agg = agg.assign(_order=agg.config.map(order)).sort_values(["profile", "hardware", "_order"])
    rows = []
    for _, r in agg.iterrows():
        p = paper[r.config]
        rows.append({
            "budget": budget_note(r.profile, r.steps, r.config) or "paper",
            "config": r.config,
            "seeds": r.n_seeds,
            "accuracy %": _mean_std(r.acc_top3, r.acc_std, r.n_seeds),
            "paper accuracy %": _paper_number(p["accuracy"], p["accuracy_std"]),
            "state size": _mean_std(r.size_mean, r.size_std, r.n_seeds),
            "paper size": _paper_number(p["state_size"], p["state_size_std"]),
            "train time (s)": f"{r.train_time_s:.0f}",
            "speedup": f"{r.speedup:.2f}x" if np.isfinite(r.speedup) else "n/a (no matching baseline)",
            "paper speedup": f"{p['speedup']:.2f}x" if p["speedup"] else "-",
            "hardware": f"{r.hardware}, {r.recurrence}",
        })
    return pd.DataFrame(rows)


def _mean_std(mean: float, std: float, n: int) -> str:
    """'96.3 ± 0.2', or '96.3 (1 seed)' where a standard deviation means nothing."""
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f} (1 seed)"


def _paper_number(value, std) -> str:
    if value is None:
        return "-"
    return f"{value} ± {std}" if std is not None else f"{value}"


def missing_runs(table: int, root=None, profile: str = "cpu") -> list[str]:
    """Configs of the table with no complete run in `profile` (the book prints these with the command)."""
    runs = load_table_runs(table, root)
    have = set(runs[runs.counted & (runs.profile == profile)].config)
    return [name for name in table_configs(table) if name not in have]


def missing_note(table: int, profile: str, root=None) -> str:
    """Markdown: the configs of a table with no complete run in `profile` and the command that makes them, or
    that none is missing."""
    missing = missing_runs(table, root, profile)
    if not missing:
        return f"Every configuration of the table has complete `{profile}` runs."
    return f"Missing `{profile}` runs: {', '.join(missing)}. Make them with `{reproduce_command(table, profile)}`."


def reproduce_command(table: int, profile: str, seeds=None) -> str:
    """The command that makes a table's runs in a profile."""
    seeds = seeds or SEEDS[table][:3]
    return f"python -m compressm reproduce --table {table} --profile {profile} --seeds {' '.join(map(str, seeds))}"


def provenance(table: int, root=None) -> pd.DataFrame:
    """What the table is built from: per (profile, config), the seeds counted and the records not counted (and
    why), commits and hardware."""
    runs = load_table_runs(table, root)
    if runs.empty:
        return pd.DataFrame(columns=["profile", "config", "counted seeds", "not counted", "commits", "hardware"])
    grouped = runs.groupby(["profile", "config"], sort=False)
    return grouped.apply(lambda g: pd.Series({
        "counted seeds": " ".join(map(str, sorted(g[g.counted].seed))),
        "not counted": ", ".join(f"{r.seed} ({_why_not_counted(r)})" for r in g[~g.counted].itertuples()) or "-",
        "commits": " ".join(sorted({c[:7] for c in g.commit.dropna()})),
        "hardware": "; ".join(sorted(set(g.hardware.dropna()))),
    }), include_groups=False).reset_index()


def _why_not_counted(run) -> str:
    """'failed', 'unfinished', 'overrides steps=10' or 'in another folder' for a load_runs row that is not counted."""
    if run.status != "complete":
        return run.status
    return f"overrides {run.overrides}" if run.overrides else f"in another folder: {run.path}"


def scratch_comparison(table: int, root=None) -> pd.DataFrame:
    """Each tau run beside the from-scratch run at the paper's size for it: accuracy and size, ours and paper's."""
    agg = aggregate(load_table_runs(table, root)).set_index(["profile", "config"])
    paper = paper_values()
    rows = []
    for tau_config, scratch_config in scratch_partners(table).items():
        for profile in sorted({p for p, c in agg.index if c == tau_config}):
            if (profile, scratch_config) not in agg.index:
                continue
            ours, scratch = agg.loc[(profile, tau_config)], agg.loc[(profile, scratch_config)]
            rows.append({
                "profile": profile, "compressed": tau_config, "from scratch": scratch_config,
                "compressed acc %": round(ours.acc_top3, 1), "at size": round(ours.size_mean, 1),
                "scratch acc %": round(scratch.acc_top3, 1), "scratch size": round(scratch.size_mean, 1),
                "difference (points)": round(ours.acc_top3 - scratch.acc_top3, 1),
                "paper difference": _paper_difference(paper[tau_config], paper[scratch_config]),
            })
    return pd.DataFrame(rows)


def _paper_difference(tau: dict, scratch: dict):
    if tau["accuracy"] is None or scratch["accuracy"] is None:
        return "-"
    return round(tau["accuracy"] - scratch["accuracy"], 1)


def claims_text(table: int, root=None) -> str:
    """Markdown sentences that test the paper's two claims on each profile's runs (or say what is missing).

    Claim 1: compressed models stay close to the baseline. Claim 2: they beat models trained from scratch
    at the same size.
    """
    agg = aggregate(load_table_runs(table, root))
    lines = []
    for profile in sorted(set(agg.profile)):
        ours = agg[agg.profile == profile].set_index("config")
        base = paper_table(table).baseline
        if base not in ours.index:
            lines.append(f"- **{profile}**: no complete baseline run yet, so claim 1 cannot be checked.")
            continue
        for tau_config, scratch_config in scratch_partners(table).items():
            if tau_config not in ours.index:
                continue
            row = ours.loc[tau_config]
            text = (f"- **{profile}, {tau_config}** ({budget_note(profile, row.steps, tau_config) or 'paper budget'}):"
                    f" {row.acc_top3:.1f} % at N = {row.size_mean:.1f}, "
                    f"{row.acc_top3 - ours.loc[base].acc_top3:+.1f} points against the baseline")
            if scratch_config in ours.index:
                scratch = ours.loc[scratch_config]
                text += (f", {row.acc_top3 - scratch.acc_top3:+.1f} points against training from scratch at"
                         f" N = {scratch.size_mean:.0f} ({scratch.acc_top3:.1f} %)")
            lines.append(text + f"; {row.n_seeds} seed(s).")
    return "\n".join(lines) or "No complete runs yet."


def representative_runs(table: int, profile: str = "cpu", root=None) -> dict[str, str]:
    """For each config of a table, the folder of its complete run with the smallest seed in `profile`."""
    runs = load_table_runs(table, root)
    done = runs[runs.counted & (runs.profile == profile)].sort_values("seed")
    return {name: done[done.config == name].path.iloc[0] for name in table_configs(table)
            if (done.config == name).any()}


def run_times(root=None) -> pd.DataFrame:
    """Measured time per run, per (profile, hardware, config): mean wall-clock and training time, ms per step."""
    runs = records.load_runs(records.runs_root(root))
    done = runs[runs.counted]
    if done.empty:
        return pd.DataFrame(columns=["profile", "hardware", "config", "runs", "wall_time_min", "train_time_min",
                                     "ms_per_step", "steps"])
    grouped = done.groupby(["profile", "hardware", "config"], sort=True)
    return grouped.apply(lambda g: pd.Series({
        "runs": len(g), "wall_time_min": g.wall_time_s.mean() / 60, "train_time_min": g.train_time_s.mean() / 60,
        "ms_per_step": 1e3 * (g.train_time_s / g.steps).mean(), "steps": int(g.steps.max()),
    }), include_groups=False).reset_index().astype({"runs": int, "steps": int})


# ----------------------------------------------------------------------------------------------------------
# Benchmark records (written by `compressm bench`)
# ----------------------------------------------------------------------------------------------------------
def bench_root(root: Path | str | None = None) -> Path:
    """The folder of the benchmark records, <runs folder>/bench (`records.runs_root`), where `bench` writes."""
    return records.runs_root(root) / "bench"


def _bench_records(root: Path | str | None = None) -> list[dict]:
    """Every benchmark record (parsed JSON) under `bench_root(root)`, in path order."""
    return [json.loads(path.read_text()) for path in sorted(bench_root(root).glob("*/*.json"))]


def load_compiles(root: Path | str | None = None) -> pd.DataFrame:
    """The `recompile` records as one row per phase after a reduction.

    Columns: hardware, dataset, recurrence, sizes (before -> after), phase, programs (what compiled: name x
    count), compile_s (their summed compile times, which overlap in parallel threads), first_s (wall time at
    the new sizes, compiling), again_s (wall time at the same sizes again), compiles_again (count, all phases).
    """
    rows = []
    for r in _bench_records(root):
        if not r["name"].startswith("recompile/"):
            continue
        for phase, first_s in r["first_wall_s"].items():
            compiled = [c for c in r["compiles"] if c["phase"] == phase]
            names = pd.Series([c["function"].removeprefix("jit(").removesuffix(")") for c in compiled]).value_counts()
            rows.append({"hardware": r["environment"]["hardware"], "dataset": r["name"].split("/")[1],
                         "recurrence": r["recurrence"],
                         "sizes": f"{r['state_size']} -> {'/'.join(map(str, r['new_sizes']))}", "phase": phase,
                         "programs": ", ".join(f"{name} x{count}" for name, count in names.items()),
                         "compile_s": sum(c["seconds"] for c in compiled), "first_s": first_s,
                         "again_s": r["again_wall_s"][phase], "compiles_again": r["compiles_at_seen_sizes"]})
    columns = ["hardware", "dataset", "recurrence", "sizes", "phase", "programs", "compile_s", "first_s", "again_s",
               "compiles_again"]
    return pd.DataFrame(rows, columns=columns)


def load_bench(root: Path | str | None = None) -> pd.DataFrame:
    """Every benchmark record under `bench_root(root)` as one row each, for the Speed page.

    Columns: name, kind, dataset, recurrence, state_size, width, median_ms, compile_s, steps_per_s,
    first_call_s, precision (reductions), hardware, commit, date.
    """
    rows = []
    for r in _bench_records(root):
        kind, dataset, *rest = r["name"].split("/")
        rows.append({"name": r["name"], "kind": kind, "dataset": dataset,
                     "recurrence": rest[0] if kind in ("train_step", "width_sweep") else None,
                     "state_size": r["state_size"], "width": r.get("width"), "batch": r.get("batch"),
                     "median_ms": 1e3 * r["median_s"], "compile_s": r.get("compile_s"),
                     "steps_per_s": r.get("steps_per_s"), "first_call_s": r.get("first_call_s"),
                     "precision": r.get("precision"),
                     "hardware": r["environment"]["hardware"], "commit": r["environment"]["commit"][:7],
                     "date": r["date"]})
    columns = ["name", "kind", "dataset", "recurrence", "state_size", "width", "batch", "median_ms", "compile_s",
               "steps_per_s", "first_call_s", "precision", "hardware", "commit", "date"]
    return pd.DataFrame(rows, columns=columns)


def streaming_speedups(records: pd.DataFrame) -> pd.DataFrame:
    """Streaming throughput per (hardware, data set, N), and its ratio to the largest N of the same group."""
    stream = records[records.kind == "streaming"]
    full = stream.loc[stream.groupby(["hardware", "dataset"]).state_size.idxmax()]
    reference = full.set_index(["hardware", "dataset"]).steps_per_s
    ratio = stream.steps_per_s.to_numpy() / reference.reindex(
        pd.MultiIndex.from_frame(stream[["hardware", "dataset"]])).to_numpy()
    columns = ["hardware", "dataset", "state_size", "steps_per_s", "speedup_vs_full"]
    return stream.assign(speedup_vs_full=ratio)[columns].sort_values(columns[:3], ascending=[True, True, False])


def fastest_recurrence(records: pd.DataFrame) -> pd.DataFrame:
    """The recurrence sweep (`width_sweep` records): per (hardware, width H, state size N), each recurrence's step
    time, the fastest, what `lru.choose_recurrence` picks there (`auto`) and its time over the fastest's."""
    sweep = records[records.kind == "width_sweep"]
    if sweep.empty:
        return pd.DataFrame(columns=["hardware", "H", "N", *lru.RECURRENCES, "fastest", "auto", "auto / fastest"])
    table = sweep.pivot_table(index=["hardware", "width", "state_size"], columns="recurrence", values="median_ms")
    table = table.reset_index().rename_axis(columns=None)
    times = table[[c for c in lru.RECURRENCES if c in table.columns]]
    table["fastest"] = times.idxmin(axis=1)
    table["auto"] = [lru.choose_recurrence(h.split(":")[0], int(w)) for h, w in zip(table.hardware, table.width)]
    table["auto / fastest"] = [times.loc[i, a] / times.loc[i].min() for i, a in zip(table.index, table.auto)]
    return table.rename(columns={"width": "H", "state_size": "N"})


def authors_comparison(root: Path | str | None = None) -> pd.DataFrame:
    """The `versus_authors` records: per hardware and state size N, our training step and the authors' (their
    released code) measured in one run, and the ratios: theirs at N / ours at N, and theirs at the full size (their
    model before compression) / ours at N."""
    rows = []
    for r in _bench_records(root):
        if r["name"].startswith("versus_authors/"):
            rows += [{"hardware": r["environment"]["hardware"], "N": n, "ours (ms)": 1e3 * r["ours_s"][str(n)],
                      "authors (ms)": 1e3 * r["authors_s"][str(n)], "speedup at N": r["speedup"][str(n)],
                      "speedup vs their full N": r["speedup_vs_full"][str(n)], "recurrence": r["recurrence"],
                      "authors' commit": r["authors_commit"][:7], "date": r["date"]} for n in r["sizes"]]
    return pd.DataFrame(rows, columns=["hardware", "N", "ours (ms)", "authors (ms)", "speedup at N",
                                       "speedup vs their full N", "recurrence", "authors' commit", "date"])


def styled(frame: pd.DataFrame, precision: int = 2):
    """A table as the book shows it: numbers to `precision` digits, no index column."""
    return frame.style.format(precision=precision).hide(axis="index")
