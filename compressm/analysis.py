"""Reading records for the Ablations and HSV-dynamics pages.

The ablation groups (which configs answer which question, the paper's finding and its source) are data, in
`ablations.yaml`. Our runs of them are read, grouped into settings and aggregated by the same code as Tables 2
and 3 (`results.book_runs`, `results.result_runs`, `results.aggregate_configs`: the mean over seeds with the
sample std, per setting); the paper's numbers come from `paper_values.yaml` (Tables 2 and 3) or from the group's
own `numbers`, each with its source. A group's `checks` turn its finding into comparisons of two configs' runs
in one setting, each settled or not by a 95 % interval (`stats`): the Welch interval of the difference of mean
accuracies, or the F interval of the ratio of the spreads of final sizes. Their outcomes are worded, and summed
up into a verdict, by the rules of the results pages (`findings.verdict`).
"""

from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml

from compressm import records, results, stats
from compressm.configs import get_config
from compressm.errors import ConfigError
from compressm.findings import AS_FOUND, CONTRARY, UNTESTED, claim_margin
from compressm.findings import verdict as verdict_word
from compressm.paper import SOURCES, paper_values
from compressm.tables import mean_sd, paper_number

SEEDS = (42, 8, 123)  # the seeds of the ablation runs, in the order to run them (42 first)
PROFILE = "cpu"  # the profile of the ablation runs
UNRESOLVED = "not resolved"


class Check(NamedTuple):
    """A finding as a comparison of two configs' runs: `a relation b` on `metric`."""

    a: str
    relation: str  # same | below | above
    b: str
    metric: str  # accuracy (mean test accuracy, %) | size_spread (sample std of the final size)


class Ablation(NamedTuple):
    """One group of ablations.yaml."""

    name: str
    title: str
    paper_ref: str
    question: str
    configs: tuple[str, ...]
    labels: dict[str, str]
    findings: tuple[tuple[str, str], ...]  # (source, text)
    checks: tuple[Check, ...]


@cache
def _data() -> dict:
    return yaml.safe_load(resources.files("compressm").joinpath("ablations.yaml").read_text())


@cache
def ablations() -> dict[str, Ablation]:
    """The groups of ablations.yaml, by name, in file order."""
    return {name: Ablation(
        name=name, title=g["title"], paper_ref=g["paper_ref"], question=g["question"], configs=tuple(g["configs"]),
        labels=g.get("labels", {}), findings=tuple((f["source"], f["text"]) for f in g["findings"]),
        checks=tuple(Check(*c) for c in g.get("checks", [])),
    ) for name, g in _data()["groups"].items()}


def extra_numbers() -> dict[str, dict]:
    """The paper's numbers (with their source) of configs that are in no paper table, from ablations.yaml."""
    return _data()["numbers"]


def ablation(name: str) -> Ablation:
    """The group `name` of ablations.yaml (ConfigError if there is none)."""
    if name not in ablations():
        raise ConfigError(f"unknown ablation {name!r}; known: {', '.join(ablations())}")
    return ablations()[name]


def label(group: Ablation, config: str) -> str:
    """The group's words for a config, else its name."""
    return group.labels.get(config, config)


def findings_text(name: str) -> str:
    """Markdown: the paper's findings of a group, one bullet each, with its source."""
    return "\n".join(f"- {text} (source: {SOURCES[source]})" for source, text in ablation(name).findings)


def paper_numbers(config: str) -> dict | None:
    """The paper's accuracy, accuracy_std, state_size, state_size_std of a config, with their `source`; None if
    the paper reports none. Tables 2 and 3 come from paper_values.yaml, the rest from ablations.yaml."""
    if config in paper_values():
        return {**paper_values()[config], "source": "paper"}
    if config in extra_numbers():
        return {"accuracy": None, "accuracy_std": None, "state_size": None, "state_size_std": None,
                **extra_numbers()[config]}
    return None


def same_margin() -> float:
    """How far apart (points of accuracy) two configs may be and still count as the same: the largest loss the
    paper reports in Table 2 (`findings.claim_margin`), what its claim 1 calls little."""
    return claim_margin(2)


# ----------------------------------------------------------------------------------------------------------
# Our runs, read and aggregated as the tables are
# ----------------------------------------------------------------------------------------------------------
class GroupView(NamedTuple):
    """A group's runs as the pages show them (cf. `results.TableView`)."""

    group: Ablation
    runs: pd.DataFrame  # every run folder of the group's configs (`results.book_runs` rows)
    agg: pd.DataFrame  # one row per (setting, config) of the result runs (`results.aggregate_configs`)
    settings: pd.DataFrame  # one row per setting, in the book's order (`results.order_settings`)


def group_view(name: str, root: Path | str | None = None) -> GroupView:
    """Read a group's runs once: all of them, their aggregates per setting, and the settings in order."""
    group = ablation(name)
    runs = results.book_runs(root)
    runs = runs[runs.config.isin(group.configs)].reset_index(drop=True)
    agg = results.aggregate_configs(results.result_runs(runs), group.configs)
    return GroupView(group, runs, agg, results.order_settings(agg))


def lead_setting(view: GroupView, profile: str = PROFILE) -> pd.Series | None:
    """The setting the pages show for a profile: its first in the book's order (canonical, then most runs)."""
    settings = view.settings[view.settings.profile == profile]
    return None if settings.empty else settings.iloc[0]


def setting_rows(view: GroupView, setting: pd.Series | None) -> pd.DataFrame:
    """The aggregate rows of one setting, indexed by config (empty for None)."""
    if setting is None:
        return view.agg.iloc[:0].set_index("config")
    mask = np.logical_and.reduce([view.agg[c] == setting[c] for c in results.SETTING])
    return view.agg[mask].set_index("config")


def group_table(view: GroupView, setting: pd.Series | None) -> pd.DataFrame:
    """One row per config of a group, in its order: ours in `setting` (mean ± sample std over seeds, '-' where
    no run is complete) beside the paper's, each paper number with its source."""
    ours = setting_rows(view, setting)
    rows = []
    for config in view.group.configs:
        r = ours.loc[config] if config in ours.index else None
        paper = paper_numbers(config) or {}
        rows.append({
            "setting": label(view.group, config), "config": config, "seeds": r.seeds if r is not None else "-",
            "test accuracy %": mean_sd(r.acc_mean, r.acc_sd, r.n_seeds) if r is not None else "-",
            "state size N": mean_sd(r.size_mean, r.size_sd, r.n_seeds) if r is not None else "-",
            "paper %": paper_number(paper.get("accuracy"), paper.get("accuracy_std")),
            "paper N": paper_number(paper.get("state_size"), paper.get("state_size_std"), None),
            "paper's source": SOURCES[paper["source"]] if paper else "-",
        })
    return pd.DataFrame(rows)


def table_outputs(name: str, root: Path | str | None = None, profile: str = PROFILE) -> list:
    """What the Ablations page shows for a group's numbers: the setting's label (its budget) and `group_table`."""
    from IPython.display import Markdown

    from compressm.tables import styled

    view = group_view(name, root)
    setting = lead_setting(view, profile)
    head = (f"**{setting.label}**:" if setting is not None else
            f"No complete `{profile}`-profile runs yet; the paper's side alone:")
    return [Markdown(head), styled(group_table(view, setting))]


def missing(name: str, root: Path | str | None = None, profile: str = PROFILE, seeds=SEEDS) -> dict[str, list]:
    """{config: seeds of `seeds` without a complete `profile` run with today's defaults}, for the configs that
    lack any."""
    runs = results.result_runs(group_view(name, root).runs)
    runs = runs[(runs.profile == profile) & runs.canonical]
    out = {c: [s for s in seeds if not ((runs.config == c) & (runs.seed == s)).any()] for c in ablation(name).configs}
    return {c: s for c, s in out.items() if s}


def missing_note(name: str, root: Path | str | None = None, profile: str = PROFILE, seeds=SEEDS) -> str:
    """Markdown: the runs of a group still missing in `profile` and the command that makes them (one run at a time;
    complete runs are skipped)."""
    absent = missing(name, root, profile, seeds)
    if not absent:
        return f"Every configuration here has complete `{profile}`-profile runs for seeds {_seeds(seeds)}."
    which = "; ".join(f"`{c}` (seed{'s' if len(s) > 1 else ''} {_seeds(s)})" for c, s in absent.items())
    return (f"**Missing runs** (`{profile}` profile): {which}. Make them, one after the other, with"
            f" `{results.config_command(absent, profile, seeds)}`.")


def setting_note(root: Path | str | None = None) -> str:
    """`results.shown_note` for every ablation's configs: which of them show runs of an earlier setting."""
    return results.shown_note(results.shown_runs(results.book_runs(root), _all_configs()))


def _all_configs() -> list[str]:
    """Every config of every ablation group."""
    return sorted({c for group in ablations().values() for c in group.configs})


def _seeds(seeds) -> str:
    return ", ".join(map(str, seeds))


def schedule_table(name: str, profile: str = PROFILE) -> pd.DataFrame:
    """What each config of a group does in `profile`: steps, mode, tau or fraction, selection and the attempts."""
    rows = []
    for config in ablation(name).configs:
        try:
            c = get_config(config, profile)
        except ConfigError:  # e.g. sCIFAR has no cpu budget
            rows.append({"config": config, "steps": "-", "mode": "no budget in this profile"})
            continue
        red, steps = c.reduction, c.reduction.attempt_steps()
        rows.append({"config": config, "steps": c.steps, "mode": red.mode,
                     "tau or fraction": {"tolerance": f"{red.tau:g}", "none": "-"}.get(red.mode, f"{red.fraction:g}"),
                     "selection": red.selection if red.mode != "none" else "-", "attempts": len(steps),
                     "attempt steps": _steps_text(steps)})
    return pd.DataFrame(rows)


def _steps_text(steps) -> str:
    if len(steps) <= 4:
        return ", ".join(map(str, steps)) or "-"
    return f"{steps[0]}, {steps[1]}, ..., {steps[-1]} (every {steps[1] - steps[0]})"


# ----------------------------------------------------------------------------------------------------------
# The paper's findings as checks on our runs
# ----------------------------------------------------------------------------------------------------------
_VERBS = {"same": "matches", "below": "is below", "above": "is above"}
_METRIC_WORDS = {"accuracy": "in accuracy", "size_spread": "in the spread of final sizes"}


def judge(check: Check, a: pd.Series, b: pd.Series) -> dict:
    """One check on two aggregate rows (`results.aggregate_configs`): the two values, the interval of their
    difference (accuracy, points) or ratio (size spread), and the outcome: `findings.AS_FOUND`, `CONTRARY`,
    `UNRESOLVED`, or `findings.UNTESTED` (a side with one seed)."""
    if check.metric == "size_spread":
        r = stats.sd_ratio(a.size_values, b.size_values)
        values, lo, hi, null = (a.size_sd, b.size_sd), r.low, r.high, 1.0
        interval = f"ratio {r.estimate:.2g} [{lo:.2g}, {hi:.2g}]" if r.tested else "-"
        tested = r.tested
    else:
        d = stats.welch_difference(a.acc_values, b.acc_values)
        values, lo, hi, null = (a.acc_mean, b.acc_mean), d.low, d.high, 0.0
        interval = f"{d.estimate:+.1f} [{lo:+.1f}, {hi:+.1f}]" if d.tested else f"{d.estimate:+.1f}"
        tested = d.tested
    if not tested:
        outcome = UNTESTED
    elif check.relation == "same":
        m = same_margin()
        outcome = AS_FOUND if -m <= lo and hi <= m else CONTRARY if hi < -m or lo > m else UNRESOLVED
    else:
        above = lo > null
        below = hi < null
        wanted, opposite = (above, below) if check.relation == "above" else (below, above)
        outcome = AS_FOUND if wanted else CONTRARY if opposite else UNRESOLVED
    return {"a": float(values[0]), "b": float(values[1]), "interval": interval, "outcome": outcome}


def check_table(view: GroupView, setting: pd.Series | None) -> pd.DataFrame:
    """A group's checks in one setting: one row each, the outcome '-' where a config has no run there."""
    ours = setting_rows(view, setting)
    rows = []
    for check in view.group.checks:
        row = {"check": f"{label(view.group, check.a)} {_VERBS[check.relation]} {label(view.group, check.b)}"
                        f" {_METRIC_WORDS[check.metric]}", "metric": check.metric}
        if check.a in ours.index and check.b in ours.index:
            row |= judge(check, ours.loc[check.a], ours.loc[check.b])
        else:
            row |= {"a": np.nan, "b": np.nan, "interval": "-", "outcome": "-"}
        rows.append(row)
    return pd.DataFrame(rows, columns=["check", "metric", "a", "b", "interval", "outcome"])


def verdict(name: str, root: Path | str | None = None, profile: str = PROFILE) -> str:
    """One sentence: whether the paper's finding for a group holds on our `profile` runs (its budget said in the
    same sentence), and on which numbers."""
    view = group_view(name, root)
    group, setting = view.group, lead_setting(view, profile)
    checks = check_table(view, setting)
    if checks.empty:
        return f"**{group.title}**: no check is defined for this group."
    if (checks.outcome == "-").any():
        absent = ", ".join(f"`{c}`" for c in missing(name, root, profile))
        return (f"**{group.title}** ({group.paper_ref}): **Not tested** yet (missing `{profile}`-profile runs of"
                f" {absent}).")
    word = verdict_word(dict(zip(checks.check, checks.outcome)))
    unit = {"accuracy": " %", "size_spread": " states (sd)"}
    parts = [f"{r.check}: {r.a:.1f} vs {r.b:.1f}{unit[r.metric]}, {r.interval}, {r.outcome}" for r in checks.itertuples()]
    seeds = sorted({int(s) for r in setting_rows(view, setting).seeds for s in r.split()})
    return (f"**{group.title}** ({group.paper_ref}), at {setting.budget}, seeds {_seeds(seeds)}: **{word}**."
            f" {'; '.join(parts)} (95 % intervals).")


# ----------------------------------------------------------------------------------------------------------
# Single runs: size trajectories and rollbacks
# ----------------------------------------------------------------------------------------------------------
def result_records(config: str, root: Path | str | None = None, profile: str = PROFILE) -> dict[int, dict]:
    """{seed: metrics.json} of a config's runs in `profile` that the page shows (`results.shown_runs`), by seed."""
    runs = results.shown_runs(results.book_runs(root), _all_configs())
    runs = runs[(runs.config == config) & (runs.profile == profile)].sort_values("seed")
    return {int(r.seed): records.load_metrics(r.path) for r in runs.itertuples()}


def rollback_table(config: str = "smnist_pragmatic", root: Path | str | None = None,
                   profile: str = PROFILE) -> pd.DataFrame:
    """Per result run of a config: reductions made, rollback step and validation accuracy then, final size and
    test accuracy."""
    rows = []
    for seed, m in result_records(config, root, profile).items():
        rollback = m["rollbacks"][0] if m["rollbacks"] else None
        rows.append({"seed": seed, "reductions": len(m["reductions"]),
                     "rollback at step": rollback["step"] if rollback else "none",
                     "val. accuracy then %": f"{100 * rollback['val_acc']:.1f}" if rollback else "-",
                     "final size": m["summary"]["mean_state_size"], "test accuracy %": 100 * m["summary"]["test_acc"]})
    return pd.DataFrame(rows)


def dynamics_record(root: Path | str | None = None,
                    config: str = "smnist_dynamics") -> tuple[pd.Series, dict[str, np.ndarray]] | None:
    """(run, `records.load_dynamics`) of the run the dynamics page shows: a shown run (`results.shown_runs`) of
    `config` that recorded dynamics, the paper profile's (Fig. 2's 25k steps) before the cpu profile's, the
    smallest seed; None if there is none. `run` is its `results.book_runs` row (its `variant` names its setting)."""
    runs = results.shown_runs(results.book_runs(root), [config]).sort_values("seed")
    for profile in ("paper", "cpu"):
        for _, run in runs[runs.profile == profile].iterrows():
            arrays = records.load_dynamics(run.path)
            if arrays:
                return run, arrays
    return None
