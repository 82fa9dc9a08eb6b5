"""Reading records for the book: run records grouped into settings and aggregated over seeds, and benchmark records.

A *setting* is what must be equal for runs to be aggregated together or compared: the profile (the budget),
the variant (what a run's resolved config changes against today's packaged config, '' for none), the hardware
and the recurrence. Settings are listed with the paper's budget first, then by budget, canonical runs (no
variant) before variants. Plumbing checks (the smoke profile) and runs that are not complete never enter a
table, a figure or a claim; `plumbing_note` says in one line whether the check passed.

Per configuration and setting: the mean over all seeds with the sample std (`stats.summarize`), the paper's
top-3 mean beside it when there are more than three seeds, the per-block state size, the training time
(`train_time_s`: steps and recompilations, evaluation excluded) and the speedup against the same setting's
full model.
"""

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from compressm import lru, records, stats
from compressm.configs import PROFILES, get_config
from compressm.paper import SEEDS, hsv_picture, paper_table, role, table_configs, table_values

SETTING = ["profile", "variant", "hardware", "recurrence"]
NBSP = "\u00a0"  # joins a number to its unit or its ± so that a table cell never breaks there
# Config fields whose value is worth words in a variant's label (others are shown as key=value).
_OPTION_WORDS = {("model.norm", "ema"): "BatchNorm rule: ema (the authors')",
                 ("model.norm", "batch"): "BatchNorm rule: batch (flax), earlier runs",
                 ("model.time_channel", "False"): "pixel input (no time channel), earlier runs",
                 ("model.dropout_mask", "example"): "a dropout mask per example, earlier runs"}
RECURRENCE_WORDS = {"conv": "FFT convolution", "scan": "sequential scan", "associative": "associative scan"}


# ----------------------------------------------------------------------------------------------------------
# Which runs the book reads
# ----------------------------------------------------------------------------------------------------------
def book_runs(root: Path | str | None = None) -> pd.DataFrame:
    """Every run folder under the runs folder (`records.load_runs`), with what the book needs to sort them.

    Added columns: `variant` ('' when the run's resolved config is today's packaged config for its name and
    profile, else the changed keys, e.g. 'model.norm=batch': `records.run_name`; '?' for a failed run recorded
    without its config), `canonical` (no variant), `finished` (a complete record: failed or unfinished runs are
    never counted), `plumbing` (a smoke-profile check, never a result). This is the one function through which
    the pages read runs.
    """
    runs = records.load_runs(records.runs_root(root))
    variant = runs.overrides.fillna("?")
    return runs.assign(variant=variant, canonical=variant == "", finished=runs.status == "complete",
                       plumbing=runs.profile.map(lambda p: PROFILES[p].plumbing if p in PROFILES else False))


def result_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that count as results: finished, in the folder their identity names (`records.load_runs`'s
    `in_place`: a record moved or written into another run's folder never counts), not a plumbing check."""
    return runs[runs.finished & runs.in_place & ~runs.plumbing]


def shown_runs(runs: pd.DataFrame, configs) -> pd.DataFrame:
    """The result runs of `configs` that a single-setting page shows: per profile, one setting for all of them,
    the variant that covers the most configs, then has the most runs (today's defaults, or fewer changed options,
    on a tie), so that the page never compares runs of two settings. An earlier setting is named by `shown_note`."""
    runs = result_runs(runs)
    runs = runs[runs.config.isin(list(configs))]
    counts = runs.groupby(["profile", "variant"]).agg(configs=("config", "nunique"), n=("config", "size"))
    counts = counts.reset_index()
    changed = counts.variant.map(lambda v: len(v.split(",")) if v else 0)
    counts = counts.assign(changed=changed).sort_values(["configs", "n", "changed"], ascending=[False, False, True],
                                                        kind="stable")
    chosen = pd.MultiIndex.from_frame(counts.drop_duplicates("profile")[["profile", "variant"]])
    return runs[pd.MultiIndex.from_frame(runs[["profile", "variant"]]).isin(chosen)]


def shown_note(runs: pd.DataFrame) -> str:
    """One line for a page whose `shown_runs` are of an earlier setting: which, per profile; '' if none."""
    earlier = runs[runs.variant != ""].drop_duplicates(["profile", "variant"])
    if earlier.empty:
        return ""
    parts = [f"{r.profile} profile: {variant_label(r.variant)}" for r in earlier.itertuples()]
    return ("**Setting**: per profile, this page shows the one setting with runs of the most configurations;"
            f" where that is not today's defaults (the authors' recipe), it says so: {'; '.join(parts)}.")


def plumbing_note(runs: pd.DataFrame) -> str:
    """A collapsed MyST note on the plumbing checks (smoke runs) among `runs`, '' if there are none."""
    smoke = runs[runs.plumbing]
    if smoke.empty:
        return ""
    ok = int(smoke.finished.sum())
    verdict = "passed" if ok == len(smoke) else f"{len(smoke) - ok} of {len(smoke)} runs did not finish"
    return (f":::{{admonition}} Plumbing check: {verdict}\n:class: dropdown\n"
            f"The runs folder holds {len(smoke)} smoke-profile runs, a few dozen steps each, that check the pipeline"
            f" end to end. They are not results and enter no table, figure or verdict.\n:::")


def run_notes(runs: pd.DataFrame) -> str:
    """What a page says about runs that enter none of its tables: the plumbing checks (`plumbing_note`) and the
    damaged records (`records.left_out_note`), as Markdown; '' if there are none."""
    return "\n\n".join(note for note in (plumbing_note(runs), records.left_out_note(runs)) if note)


# ----------------------------------------------------------------------------------------------------------
# Settings, and one table's runs aggregated per setting
# ----------------------------------------------------------------------------------------------------------
def hardware_label(hardware: str) -> str:
    """'cpu: 2-core CPU' -> 'CPU (2 cores)'; 'gpu: NVIDIA H100 80GB HBM3' -> 'GPU (NVIDIA H100 80GB HBM3)'.
    A string that is not a record's '<backend>: <device>' (a label already, or missing) is returned unchanged."""
    if not isinstance(hardware, str) or ": " not in hardware:
        return hardware
    backend, _, device = hardware.partition(": ")
    if backend == "cpu" and device.endswith("-core CPU"):
        return f"CPU ({device.removesuffix('-core CPU')} cores)"
    return f"{backend.upper()} ({device})"


def variant_label(variant: str) -> str:
    """Words for a variant: 'current defaults (...)' for '', else its changed options."""
    if variant == "?":
        return "config not recorded"
    if variant == "":
        return "current defaults (the authors' recipe: time channel, one dropout mask per batch, ema BatchNorm)"
    parts = [pair.partition("=") for pair in variant.split(",")]
    return "; ".join(_OPTION_WORDS.get((key, value), f"{key} = {value}") for key, _, value in parts)


def budget_label(profile: str, steps: int, config_name: str, whose: str = "the paper's") -> str:
    """'200k steps (the paper's budget)' or '10k of the paper's 200k steps (5 %, cpu profile)'; `whose` names
    where the config's paper-profile steps come from when they are not a whole training (e.g. "Fig. 2's")."""
    paper_steps = get_config(config_name).steps
    if profile == "paper" and steps == paper_steps:
        return f"{paper_steps / 1000:g}k steps ({whose} budget)"
    return (f"{steps / 1000:g}k of {whose} {paper_steps / 1000:g}k steps ({100 * steps / paper_steps:.0f} %,"
            f" {profile} profile)")


def config_label(name: str) -> str:
    """'full model (N = 256)', 'compressed, τ = 0.02' or 'from scratch, N = 28'."""
    config = get_config(name)
    kind = role(name)
    if kind == "baseline":
        return f"full model (N{NBSP}={NBSP}{config.model.state_size})"
    if kind == "compressed":
        return f"compressed, τ{NBSP}={NBSP}{config.reduction.tau:g}"
    return f"from scratch, N{NBSP}={NBSP}{config.model.state_size}"


class TableView(NamedTuple):
    """A paper table's runs as the pages show them."""

    table: int
    runs: pd.DataFrame  # every run folder of the table's configs (book_runs rows), plumbing checks included
    agg: pd.DataFrame  # one row per (setting, config) of the result runs (`aggregate`)
    settings: pd.DataFrame  # one row per setting, in the book's order (`order_settings`)


def table_view(table: int, root: Path | str | None = None) -> TableView:
    """Read a paper table's runs once: all of them, their aggregates per setting, and the settings in order."""
    runs = book_runs(root)
    runs = runs[runs.config.isin(table_configs(table))].reset_index(drop=True)
    agg = aggregate(result_runs(runs), table)
    return TableView(table, runs, agg, order_settings(agg))


def aggregate(runs: pd.DataFrame, table: int) -> pd.DataFrame:
    """One row per setting and config of a paper table's finished runs (`aggregate_configs`), its full model
    the baseline of `speedup`, in the paper's row order."""
    return aggregate_configs(runs, table_configs(table), paper_table(table).baseline)


def other_cores(runs: pd.DataFrame) -> pd.Series:
    """Per run (`load_runs` rows), the CPU cores other processes took on average while it ran; NaN where the run
    did not measure it (records made before `records.OtherLoad`). Groups report the most (`tables.most_cores_label`)."""
    return runs.other_cpu_s.astype(float) / runs.wall_time_s


def aggregate_configs(runs: pd.DataFrame, configs, baseline: str | None = None) -> pd.DataFrame:
    """One row per setting and config of finished runs: seeds, per-seed accuracies (%) and state sizes and their
    summaries (`stats.summarize`), the per-seed accuracies under the authors' model selection (`authors_by_seed`,
    where recorded) and how many of those runs it would have stopped early, mean training and wall-clock time
    per run, what else ran during each
    (`other_cores_values`), and `speedup` (the same setting's
    `baseline` training time over this config's; nan where the setting has no baseline run or none is given).
    Rows in the order of `configs`."""
    rows = []
    for key, group in runs.groupby(SETTING + ["config"], sort=False):
        acc, size = stats.summarize(100 * group.test_acc), stats.summarize(group.mean_state_size)
        rows.append(dict(zip(SETTING + ["config"], key)) | {
            "n_seeds": acc.n, "seeds": " ".join(map(str, sorted(group.seed))), "acc_values": list(100 * group.test_acc),
            "acc_by_seed": dict(zip(group.seed, 100 * group.test_acc)),
            "authors_by_seed": {s: 100 * a for s, a in zip(group.seed, group.authors_test_acc) if np.isfinite(a)},
            "authors_stopped": int((group.authors_stopped_step > 0).sum()),
            "acc_mean": acc.mean, "acc_sd": acc.sd, "acc_top3": acc.top3, "size_values": list(group.mean_state_size),
            "size_mean": size.mean, "size_sd": size.sd,
            "train_time_s": float(group.train_time_s.mean()), "wall_time_s": float(group.wall_time_s.mean()),
            "other_cores_values": list(other_cores(group)),
            "steps": int(group.steps.max()), "canonical": bool(group.canonical.all()),
            "commits": " ".join(sorted({str(c)[:7] for c in group.commit})),
        })
    agg = pd.DataFrame(rows, columns=SETTING + ["config", "n_seeds", "seeds", "acc_values", "acc_by_seed",
                                                "authors_by_seed", "authors_stopped", "acc_mean",
                                                "acc_sd", "acc_top3", "size_values", "size_mean", "size_sd",
                                                "train_time_s",
                                                "wall_time_s", "other_cores_values", "steps", "canonical",
                                                "commits"])
    base = agg[agg.config == baseline].set_index(SETTING).train_time_s
    ratio = base.reindex(pd.MultiIndex.from_frame(agg[SETTING])).to_numpy(dtype=float) / agg.train_time_s.to_numpy()
    order = {name: i for i, name in enumerate(configs)}
    return agg.assign(speedup=ratio).sort_values(by="config", key=lambda c: c.map(order), kind="stable")


def order_settings(agg: pd.DataFrame) -> pd.DataFrame:
    """The settings present in `agg`, paper budget first, then longer budgets, canonical before variants, then
    the setting with more runs; with `label`, `budget`, `paper_budget` and `n_runs`."""
    if agg.empty:
        return pd.DataFrame(columns=SETTING + ["label", "budget", "paper_budget", "n_runs", "steps"])
    rows = []
    for key, group in agg.groupby(SETTING, sort=False):
        setting = dict(zip(SETTING, key))
        steps, name = int(group.steps.max()), group.config.iloc[0]
        budget = budget_label(setting["profile"], steps, name)
        rows.append(setting | {
            "budget": budget, "paper_budget": setting["profile"] == "paper" and steps == get_config(name).steps,
            "n_runs": int(group.n_seeds.sum()), "steps": steps,
            "label": f"{budget} · {hardware_label(setting['hardware'])}, "
                     f"{RECURRENCE_WORDS.get(setting['recurrence'], setting['recurrence'])} · "
                     f"{variant_label(setting['variant'])}",
        })
    frame = pd.DataFrame(rows)
    frame = frame.assign(_canonical=frame.variant == "")
    frame = frame.sort_values(["paper_budget", "steps", "_canonical", "n_runs"], ascending=False, kind="stable")
    return frame.drop(columns="_canonical").reset_index(drop=True)


def setting_rows(view: TableView, setting) -> pd.DataFrame:
    """The aggregate rows of one setting (a row of `view.settings`), in the paper's row order."""
    mask = np.logical_and.reduce([view.agg[column] == setting[column] for column in SETTING])
    return view.agg[mask]


def section_settings(view: TableView, paper_budget: bool) -> pd.DataFrame:
    """The settings at the paper's budget (True) or at shorter budgets (False), in the book's order."""
    return view.settings[view.settings.paper_budget == paper_budget]


def figure_panels(view: TableView, paper_budget: bool) -> list[tuple[str, pd.DataFrame | None, dict]]:
    """The panels of a results page's figure (`plots.accuracy_vs_size`): one per setting of the section, each
    with the paper's values; one panel of the paper's values alone where the section has no runs."""
    published = table_values(view.table)
    panels = [(s.label, setting_rows(view, s), published) for _, s in section_settings(view, paper_budget).iterrows()]
    return panels or [("the paper's values (no runs of ours here yet)", None, published)]


def first_settings(view: TableView) -> dict[bool, pd.Series | None]:
    """The first setting at the paper's budget (key True) and at a shorter budget (False), None where there is
    none: the settings a page draws when it draws one of each."""
    return {budget: (None if rows.empty else rows.iloc[0])
            for budget, rows in ((b, section_settings(view, b)) for b in (True, False))}


def lead_setting(view: TableView):
    """The setting a page draws when it draws one: the first (in the book's order) with a full model and a
    compressed run, else the first; None without runs."""
    t = paper_table(view.table)
    for _, setting in view.settings.iterrows():
        configs = set(setting_rows(view, setting).config)
        if t.baseline in configs and configs & set(t.compressed):
            return setting
    return view.settings.iloc[0] if len(view.settings) else None


def schedule_note(config_name: str, profile: str) -> str:
    """How a profile's budget and reduction schedule compare with the paper's for a compressed config."""
    paper, ours = get_config(config_name), get_config(config_name, profile)
    attempts = lambda r: (f"every {r.every_steps} steps from step {r.first_step} to {r.last_step}"
                          f" ({len(r.attempt_steps())} attempts)")
    return (f"The `{profile}` profile trains {ours.steps} of the paper's {paper.steps} steps "
            f"({100 * ours.steps / paper.steps:.0f} %) with an evaluation every {ours.eval_every} steps (paper: "
            f"{paper.eval_every}) and reduction attempts {attempts(ours.reduction)}; the paper attempts "
            f"{attempts(paper.reduction)}. Its compressed models are therefore first cut at step "
            f"{ours.reduction.first_step}, while the paper's first cut comes at step {paper.reduction.first_step},"
            f" after the point (about {hsv_picture()['energy_flat_after_steps']} steps) from which the paper sees the"
            " energy share of the smallest HSVs stay flat.")


def budget_notes(view: TableView) -> str:
    """Markdown list: `schedule_note` (of the table's first compressed config) for each shorter budget's profile."""
    profiles = sorted(set(section_settings(view, False).profile))
    first = paper_table(view.table).compressed[0]
    return "\n".join(f"- {schedule_note(first, p)}" for p in profiles) or "- Every run shown trains the paper's budget."


def reproduce_command(table: int, profile: str, seeds=None) -> str:
    """The command that makes a table's runs in a profile."""
    return _command(f"--table {table}", profile, seeds or SEEDS[table][:3])


def config_command(configs, profile: str, seeds) -> str:
    """The command that makes the runs of `configs` (names) in a profile, one after the other."""
    return _command(f"--config {' '.join(configs)}", profile, seeds)


def _command(which: str, profile: str, seeds) -> str:
    return f"python -m compressm reproduce {which} --profile {profile} --seeds {' '.join(map(str, seeds))}"


# ----------------------------------------------------------------------------------------------------------
# Single runs: the run shown up close, and every executed notebook
# ----------------------------------------------------------------------------------------------------------
def showcase_run(view: TableView) -> pd.Series | None:
    """The run the book shows up close: in the first setting, the middle compressed config's smallest seed."""
    if view.settings.empty:
        return None
    first = view.settings.iloc[0]
    runs = result_runs(view.runs)
    runs = runs[np.logical_and.reduce([runs[c] == first[c] for c in SETTING])].sort_values("seed")
    compressed = paper_table(view.table).compressed
    for name in (compressed[len(compressed) // 2], *compressed, *table_configs(view.table)):
        if (runs.config == name).any():
            return runs[runs.config == name].iloc[0]
    return None


def representative_runs(view: TableView, setting) -> dict[str, pd.Series]:
    """For each config of one setting, its run (a `book_runs` row) with the smallest seed."""
    runs = result_runs(view.runs)
    runs = runs[np.logical_and.reduce([runs[c] == setting[c] for c in SETTING])].sort_values("seed")
    return {name: runs[runs.config == name].iloc[0] for name in table_configs(view.table)
            if (runs.config == name).any()}


def relative_run_path(path: str, root: Path | str | None = None) -> str:
    """A run folder as 'runs/<profile>/<config>/seed_<seed>', whatever folder the runs were read from."""
    return str(Path("runs") / Path(path).resolve().relative_to(records.runs_root(root).resolve()))


# ----------------------------------------------------------------------------------------------------------
# Benchmark records (written by `compressm bench`)
# ----------------------------------------------------------------------------------------------------------
def bench_root(root: Path | str | None = None) -> Path:
    """The folder of the benchmark records, <runs folder>/bench (`records.runs_root`), where `compressm bench` writes."""
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

    Columns: name, kind, dataset, recurrence, state_size, width, batch, median_ms, compile_s, steps_per_s,
    first_call_s, precision (reductions), other_cores (the mean CPU cores other processes took meanwhile, NaN in
    records made before it was measured), hardware, commit, date.
    """
    rows = []
    for r in _bench_records(root):
        kind, dataset, *rest = r["name"].split("/")
        rows.append({"name": r["name"], "kind": kind, "dataset": dataset,
                     "recurrence": rest[0] if kind in ("train_step", "width_sweep") else None,
                     "state_size": r["state_size"], "width": r.get("width"), "batch": r.get("batch"),
                     "median_ms": 1e3 * r["median_s"], "compile_s": r.get("compile_s"),
                     "steps_per_s": r.get("steps_per_s"), "first_call_s": r.get("first_call_s"),
                     "precision": r.get("precision"), "other_cores": r.get("other_cores", float("nan")),
                     "hardware": r["environment"]["hardware"], "commit": r["environment"]["commit"][:7],
                     "date": r["date"]})
    columns = ["name", "kind", "dataset", "recurrence", "state_size", "width", "batch", "median_ms", "compile_s",
               "steps_per_s", "first_call_s", "precision", "other_cores", "hardware", "commit", "date"]
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
