"""Reading records for the Ablations and HSV-dynamics pages.

The ablation groups (which configs answer which question, the paper's finding and its source) are data, in
`ablations.yaml`. Our runs of them are aggregated by the same code as Tables 2 and 3 (`results.aggregate`: top-3
mean accuracy, std over seeds, per-block mean size); the paper's numbers come from `paper_values.yaml` (Tables 2
and 3) or from the group's own `numbers`, each with its source. A group's `checks` turn its finding into
comparisons between our aggregated runs (`check_table`), judged against a stated noise scale (`noise`).
"""

import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import yaml

from compressm import records, results
from compressm.configs import get_config
from compressm.errors import ConfigError
from compressm.paper import paper_values

SOURCES = {  # how the book labels the paper's side (ablations.yaml says which applies)
    "paper": "the paper (Tables 2 and 3)",
    "figure": "read off the paper's Fig. 2 (approximate)",
    "authors": "the authors' code",
    "secondary": "a secondary summary of the paper, not verified against it",
}
SOURCE_TAGS = {"paper": "paper", "figure": "paper's Fig. 2", "authors": "authors' code",
               "secondary": "paper via a secondary summary (unverified)"}  # the same, short, for legends
SEEDS = (42, 8, 123)  # the seeds of the ablation runs, in the order to run them (42 first)
PROFILE = "cpu"  # the profile of the ablation runs
NOISE_SIGMAS = 2.0  # a difference counts if it exceeds this many standard deviations of the difference ...
NOISE_FLOOR = {"accuracy": 0.5, "size": 1.0}  # ... and at least this (accuracy points; states)


class Check(NamedTuple):
    """A finding as a comparison of two configs' aggregated runs: `a relation b` on `metric`."""

    a: str
    relation: str  # same | below | above
    b: str
    metric: str  # accuracy | size | size_spread


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


# ----------------------------------------------------------------------------------------------------------
# Our runs, aggregated as the tables are
# ----------------------------------------------------------------------------------------------------------
def group_runs(name: str, root: Path | str | None = None) -> pd.DataFrame:
    """Every run row (`records.load_runs`) of a group's configs, smoke runs (plumbing checks) left out."""
    runs = records.load_runs(records.runs_root(root))
    return runs[runs.config.isin(ablation(name).configs) & (runs.profile != "smoke")].reset_index(drop=True)


def group_aggregate(name: str, root: Path | str | None = None) -> pd.DataFrame:
    """A group's counted runs aggregated by `results.aggregate` (one row per profile, config, hardware, recurrence)."""
    return results.aggregate(group_runs(name, root))


def _number(value, std=None, n: int | None = None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if n == 1:
        return f"{value:.{digits}f} (1 seed)"
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{value:.{digits}f}"


def group_table(name: str, root: Path | str | None = None, profile: str = PROFILE) -> pd.DataFrame:
    """One row per config of a group, in its order: ours in `profile` (or '-' where no run is complete yet) beside
    the paper's, each paper number with its source."""
    group = ablation(name)
    agg = group_aggregate(name, root)
    agg = agg[agg.profile == profile].drop_duplicates("config").set_index("config")
    rows = []
    for config in group.configs:
        ours = agg.loc[config] if config in agg.index else None
        paper = paper_numbers(config) or {}
        rows.append({
            "setting": label(group, config), "config": config,
            "seeds": int(ours.n_seeds) if ours is not None else 0,
            "accuracy %": _number(ours.acc_top3, ours.acc_std, ours.n_seeds) if ours is not None else "-",
            "state size": _number(ours.size_mean, ours.size_std, ours.n_seeds) if ours is not None else "-",
            "paper accuracy %": _number(paper.get("accuracy"), paper.get("accuracy_std")),
            "paper size": _number(paper.get("state_size"), paper.get("state_size_std")),
            "paper source": SOURCES[paper["source"]] if paper else "-",
        })
    return pd.DataFrame(rows)


def missing(name: str, root: Path | str | None = None, profile: str = PROFILE) -> list[str]:
    """A group's configs with no counted run in `profile`."""
    runs = group_runs(name, root)
    have = set(runs[runs.counted & (runs.profile == profile)].config)
    return [config for config in ablation(name).configs if config not in have]


def reproduce_command(configs, profile: str = PROFILE, seeds=SEEDS) -> str:
    """The command that makes the runs of `configs` in `profile`."""
    return (f"python -m compressm reproduce --config {' '.join(configs)} --profile {profile}"
            f" --seeds {' '.join(map(str, seeds))}")


def missing_note(name: str, root: Path | str | None = None, profile: str = PROFILE) -> str:
    """Markdown: the configs of a group still without a `profile` run and the command that makes them."""
    absent = missing(name, root, profile)
    if not absent:
        return f"Every configuration here has complete `{profile}` runs."
    return (f"No complete `{profile}` run yet of {', '.join(f'`{c}`' for c in absent)}; make them with"
            f" `{reproduce_command(absent, profile)}`.")


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
_COLUMN = {"accuracy": ("acc_top3", "acc_std"), "size": ("size_mean", "size_std"), "size_spread": ("size_std", None)}
_VERBS = {"same": "matches", "below": "is below", "above": "is above"}
_METRIC_WORDS = {"accuracy": "in accuracy (%)", "size": "in final size", "size_spread": "in the spread of final sizes"}


def noise(metric: str, std_a: float, std_b: float) -> float:
    """The noise scale of a difference of two means: NOISE_SIGMAS * sqrt(std_a^2 + std_b^2) (stds over seeds),
    at least NOISE_FLOOR[metric]. A rough rule for three seeds, not a significance test."""
    return max(NOISE_FLOOR[metric], NOISE_SIGMAS * math.hypot(std_a, std_b))


def judge(check: Check, a: pd.Series, b: pd.Series) -> dict:
    """One check on the aggregated rows a and b (`results.aggregate`): the two values, their difference, the
    noise scale and whether the relation holds."""
    value, spread = _COLUMN[check.metric]
    diff = float(a[value] - b[value])
    if check.metric == "size_spread":
        scale = 0.0
        measurable = a.n_seeds > 1 and b.n_seeds > 1
    else:
        scale = noise(check.metric, float(a[spread]), float(b[spread]))
        measurable = True
    holds = {"same": abs(diff) <= scale, "below": diff < -scale, "above": diff > scale}[check.relation]
    return {"a": float(a[value]), "b": float(b[value]), "difference": diff, "noise": scale,
            "holds": bool(holds) if measurable else None}


def check_table(name: str, root: Path | str | None = None, profile: str = PROFILE) -> pd.DataFrame:
    """A group's checks on its `profile` runs: one row each, with `holds` True, False, or None (not measurable
    with one seed) and NaN values where a config has no run yet."""
    group = ablation(name)
    agg = group_aggregate(name, root)
    agg = agg[agg.profile == profile].drop_duplicates("config").set_index("config")
    rows = []
    for check in group.checks:
        row = {"check": f"{label(group, check.a)} {_VERBS[check.relation]} {label(group, check.b)}"
                        f" {_METRIC_WORDS[check.metric]}"}
        if check.a in agg.index and check.b in agg.index:
            row |= judge(check, agg.loc[check.a], agg.loc[check.b])
        else:
            row |= {"a": math.nan, "b": math.nan, "difference": math.nan, "noise": math.nan, "holds": None}
        rows.append(row)
    return pd.DataFrame(rows, columns=["check", "a", "b", "difference", "noise", "holds"])


def verdict(name: str, root: Path | str | None = None, profile: str = PROFILE) -> str:
    """One sentence: whether the paper's finding for a group holds on our `profile` runs, and on which numbers."""
    group = ablation(name)
    checks = check_table(name, root, profile)
    if checks.empty:
        return f"**{group.title}**: no check is defined for this group."
    if checks.a.isna().any() or checks.b.isna().any():
        absent = ", ".join(f"`{c}`" for c in missing(name, root, profile))
        return f"**{group.title}** ({group.paper_ref}): not measured yet (no complete `{profile}` run of {absent})."
    outcome = ("cannot be judged with one seed" if checks.holds.isna().any() else
               "holds" if checks.holds.all() else "does not hold")
    runs = group_runs(name, root)
    runs = runs[runs.counted & (runs.profile == profile)]
    budget = results.budget_note(profile, int(runs.steps.max()), group.configs[0]) or "the paper's budget"
    parts = [f"{row.check}: {row.a:.1f} vs {row.b:.1f}" + (f" (noise {row.noise:.1f})" if row.noise else "")
             + {True: " ✓", False: " ✗", None: " ?"}[row.holds] for row in checks.itertuples()]
    return (f"**{group.title}** ({group.paper_ref}): the paper's finding {outcome} at our budget ({budget},"
            f" seeds {' '.join(map(str, sorted(set(runs.seed))))}): {'; '.join(parts)}.")


# ----------------------------------------------------------------------------------------------------------
# Single runs: size trajectories and rollbacks
# ----------------------------------------------------------------------------------------------------------
def counted_records(config: str, root: Path | str | None = None, profile: str = PROFILE) -> dict[int, dict]:
    """{seed: metrics.json} of a config's counted runs in `profile`, by seed."""
    runs = records.load_runs(records.runs_root(root))
    runs = runs[runs.counted & (runs.config == config) & (runs.profile == profile)].sort_values("seed")
    return {int(r.seed): records.load_metrics(r.path) for r in runs.itertuples()}


def rollback_table(config: str = "smnist_pragmatic", root: Path | str | None = None,
                   profile: str = PROFILE) -> pd.DataFrame:
    """Per counted run of a config: reductions made, rollback step and validation accuracy then, final size and
    test accuracy."""
    rows = []
    for seed, m in counted_records(config, root, profile).items():
        rollback = m["rollbacks"][0] if m["rollbacks"] else None
        rows.append({"seed": seed, "reductions": len(m["reductions"]),
                     "rollback at step": rollback["step"] if rollback else "none",
                     "val. accuracy then %": f"{100 * rollback['val_acc']:.1f}" if rollback else "-",
                     "final size": m["summary"]["mean_state_size"], "test accuracy %": 100 * m["summary"]["test_acc"]})
    return pd.DataFrame(rows)
