"""The paper's claims tested on our runs: one verdict per claim and setting, with the evidence behind it.

Claim 1 (Tables 2 and 3): compressing in training costs little accuracy against the full model, "little" being
no more than the largest loss the paper reports in the table (`claim_margin`). For each tau, the Welch interval
of mean(compressed) - mean(full model) settles it or not (`drop_outcome`). Claim 2: compressed models beat
models trained from scratch at the size the paper's compressed models reach (`beats_outcome`). A verdict is only
as strong as the seeds behind it: with one seed on a side there is no interval and no verdict. Claim 3 (Table
3): compressed models train faster; without sCIFAR training runs, measured step times give the speedups they
imply (`implied_speedups`). The paper's HSV picture is drawn beside ours, not scored.
"""

import numpy as np
import pandas as pd

from compressm import stats
from compressm.configs import get_config
from compressm.paper import TABLES, hsv_picture_text, paper_table, paper_values, scratch_partners
from compressm.results import (NBSP, RECURRENCE_WORDS, TableView, config_label, first_settings, hardware_label,
                               reproduce_command, setting_rows)
from compressm.tables import markdown_table, mean_sd

AS_FOUND, CONTRARY = "as the paper found", "contrary to the paper"  # outcomes of the ablations' checks (analysis)
GOOD = {"within the paper's losses", "compressed better", AS_FOUND}
BAD = {"larger loss than the paper's", "scratch better", CONTRARY}
UNTESTED = "not tested (one seed)"
_DATASET = {2: "sMNIST", 3: "sCIFAR"}
_PAGE = {2: "table2", 3: "table3"}


def drop_outcome(difference: stats.Difference, margin: float) -> str:
    """Claim 1 for one tau, from the interval of mean(compressed) - mean(full model) in points and the claim's
    margin, the largest loss the paper reports in the table (a positive number of points)."""
    if not difference.tested:
        return UNTESTED
    if difference.low >= -margin:
        return "within the paper's losses"
    if difference.high < -margin:
        return "larger loss than the paper's"
    return "not resolved"


def beats_outcome(difference: stats.Difference) -> str:
    """Claim 2 for one pair: the sign of mean(compressed) - mean(from scratch), if the interval settles it."""
    if not difference.tested:
        return UNTESTED
    if difference.low > 0:
        return "compressed better"
    if difference.high < 0:
        return "scratch better"
    return "not resolved"


def verdict(outcomes: dict[str, str]) -> str:
    """Words for a claim in one setting from its outcomes per tau or pair: Holds, Does not hold, Unresolved,
    Not tested, or the counts ('Holds for 1 of 3, unresolved for 2')."""
    values = [v for v in outcomes.values() if v != UNTESTED]
    if not values:
        return "Not tested"
    good, bad = sum(v in GOOD for v in values), sum(v in BAD for v in values)
    open_ = len(values) - good - bad
    if good == len(values):
        return "Holds"
    if bad == len(values):
        return "Does not hold"
    if open_ == len(values):
        return "Unresolved"
    parts = [f"holds for {good} of {len(values)}" if good else "", f"fails for {bad}" if bad else "",
             f"unresolved for {open_}" if open_ else ""]
    text = ", ".join(p for p in parts if p)
    return text[0].upper() + text[1:]


def claim_margin(table: int) -> float:
    """The largest accuracy loss (points) against the full model that the paper reports in a table: what
    claim 1 calls little."""
    t = paper_table(table)
    return max(-_paper_difference(c, t.baseline) for c in t.compressed)


def _interval(d: stats.Difference) -> str:
    if not d.tested:
        return f"{d.estimate:+.1f}"
    return f"{d.estimate:+.1f} [{d.low:+.1f},{NBSP}{d.high:+.1f}]"


def _paper_difference(a: str, b: str) -> float:
    paper = paper_values()
    if paper[a]["accuracy"] is None or paper[b]["accuracy"] is None:
        return float("nan")
    return round(paper[a]["accuracy"] - paper[b]["accuracy"], 1)


def comparisons(view: TableView) -> pd.DataFrame:
    """Every comparison the two claims rest on, per setting: each tau against the full model (claim 'close')
    and against its from-scratch partner (claim 'scratch'), with the difference of means in points, its Welch
    interval, the paper's difference and the outcome."""
    rows = []
    base = paper_table(view.table).baseline
    for index, setting in view.settings.iterrows():
        agg = setting_rows(view, setting).set_index("config")
        for tau, scratch in scratch_partners(view.table).items():
            for claim, other in (("close", base), ("scratch", scratch)):
                if tau not in agg.index or other not in agg.index:
                    continue
                a, b = agg.loc[tau], agg.loc[other]
                d = difference(a.acc_by_seed, b.acc_by_seed)
                paper = _paper_difference(tau, other)
                threshold = -claim_margin(view.table) if claim == "close" else 0.0
                outcome = drop_outcome(d, claim_margin(view.table)) if claim == "close" else beats_outcome(d)
                rows.append({"setting": index, "claim": claim, "compressed": tau, "against": other,
                             "compressed %": mean_sd(a.acc_mean, a.acc_sd, a.n_seeds),
                             "at N": f"{a.size_mean:.1f}", "other %": mean_sd(b.acc_mean, b.acc_sd, b.n_seeds),
                             "other N": f"{b.size_mean:.0f}", "difference": d, "paper difference": paper,
                             "outcome": outcome,
                             "to decide": seeds_to_decide(d, threshold, a.acc_by_seed, b.acc_by_seed)
                             if outcome == "not resolved" else None})
    return pd.DataFrame(rows, columns=["setting", "claim", "compressed", "against", "compressed %", "at N",
                                       "other %", "other N", "difference", "paper difference", "outcome",
                                       "to decide"])


def difference(a: dict, b: dict) -> stats.Difference:
    """mean(a) - mean(b) of per-seed accuracies {seed: %}: paired over the shared seeds where at least two are
    shared (`stats.paired_difference`), else Welch's over all seeds of each side."""
    if len(set(a) & set(b)) >= 2:
        return stats.paired_difference(a, b)
    return stats.welch_difference(list(a.values()), list(b.values()))


def _seeds_words(n: int, d: stats.Difference) -> str:
    """'about 12 pairs' or 'about 30 seeds a side'; 'more than 100 ...' past that (the estimate then only says
    that the observed difference sits on the claim's threshold)."""
    unit = "pairs" if d.paired else "seeds a side"
    return f"about {int(n)} {unit}" if n <= 100 else f"more than 100 {unit}"


def seeds_to_decide(d: stats.Difference, threshold: float, a: dict, b: dict) -> int | None:
    """`stats.seeds_to_decide` for an unresolved comparison at the spread observed: of the paired differences,
    or the larger of the two sides' sds."""
    if d.paired:
        shared = sorted(set(a) & set(b))
        sd = float(np.std([a[s] - b[s] for s in shared], ddof=1))
    else:
        sd = max(float(np.std(list(v.values()), ddof=1)) if len(v) > 1 else float("nan") for v in (a, b))
    return stats.seeds_to_decide(d, threshold, sd)


def comparison_table(view: TableView, claim: str, setting: int) -> pd.DataFrame:
    """`comparisons` of one claim in one setting (an index of `view.settings`) as the page shows them."""
    frame = comparisons(view)
    frame = frame[(frame.claim == claim) & (frame.setting == setting)]
    other = "full model" if claim == "close" else "from scratch"
    return pd.DataFrame({
        "compressed": frame.compressed.map(config_label), "compressed %": frame["compressed %"],
        "its N": frame["at N"], f"{other} %": frame["other %"], f"{other} N": frame["other N"],
        "difference, points [95 % interval]": frame.difference.map(_interval),
        "paper's difference": [f"{p:+.1f}" if np.isfinite(p) else "-" for p in frame["paper difference"]],
        "outcome": [o if n is None or pd.isna(n) else f"{o} ({_seeds_words(n, d)} would decide it)"
                    for o, n, d in zip(frame.outcome, frame["to decide"], frame.difference)],
    })


def comparison_outputs(view: TableView, claim: str) -> list:
    """What a results page shows for one claim: per setting with comparisons, its label and `comparison_table`."""
    from IPython.display import Markdown

    from compressm.tables import styled

    outputs = []
    for index, setting in view.settings.iterrows():
        table = comparison_table(view, claim, index)
        if not table.empty:
            outputs += [Markdown(f"**{setting.label}**:"), styled(table)]
    return outputs or [Markdown("No pairs of complete runs yet.")]


def verdicts(view: TableView) -> pd.DataFrame:
    """One row per (setting, claim): the verdict word and its detail (outcome per tau or pair, seeds)."""
    frame = comparisons(view)
    rows = []
    for index, setting in view.settings.iterrows():
        for claim in ("close", "scratch"):
            mine = frame[(frame.setting == index) & (frame.claim == claim)]
            outcomes = {f"τ{NBSP}={NBSP}{get_config(c).reduction.tau:g}": o
                        for c, o in zip(mine.compressed, mine.outcome)}
            rows.append({"setting": index, "label": setting.label, "paper_budget": setting.paper_budget,
                         "claim": claim, "verdict": verdict(outcomes),
                         "detail": _detail(view, setting, mine, outcomes)})
    return pd.DataFrame(rows, columns=["setting", "label", "paper_budget", "claim", "verdict", "detail"])


def _detail(view: TableView, setting, mine: pd.DataFrame, outcomes: dict) -> str:
    if mine.empty:
        paper = paper_values()
        have = "; ".join(
            f"{config_label(r.config)}: {r.acc_mean:.1f} % at N = {r.size_mean:.1f} ({r.n_seeds} seed"
            f"{'s' if r.n_seeds > 1 else ''}" + (f"; paper {paper[r.config]['accuracy']} % at "
                                                 f"{paper[r.config]['state_size']})"
                                                 if paper[r.config]["accuracy"] is not None else ")")
            for r in setting_rows(view, setting).itertuples())
        return f"this setting lacks the runs to compare; it has {have}"
    groups: dict[str, list[str]] = {}
    for (tau, outcome), d, n in zip(outcomes.items(), mine.difference, mine["to decide"]):
        decide = "" if n is None or pd.isna(n) else f"; {_seeds_words(n, d)} would decide"
        groups.setdefault(outcome, []).append(f"{tau} ({_interval(d)}{decide})")
    seeds = sorted({d.n_a for d in mine.difference} | {d.n_b for d in mine.difference})
    n = f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
    kinds = sorted({"paired" if d.paired else "Welch" for d in mine.difference if d.tested})
    how = f"95{NBSP}% {' and '.join(kinds)} intervals" if kinds else "no interval from one seed"
    words = {UNTESTED: "the difference alone"}  # the verdict already says "Not tested"
    return "; ".join(f"{words.get(outcome, outcome)} at {', '.join(taus)}" for outcome, taus in groups.items()) + \
        f" (difference in points, compressed minus other; {n} per configuration, {how})"


def claim_text(table: int, claim: str) -> str:
    """A claim of the paper in words, with its numbers read from `paper_values.yaml`."""
    t = paper_table(table)
    taus = " / ".join(f"{get_config(c).reduction.tau:g}" for c in t.compressed)
    if claim == "close":
        diffs = " / ".join(f"{_paper_difference(c, t.baseline):+.1f}" for c in t.compressed)
        return (f"{_DATASET[table]}: compressing in training costs little accuracy, at most "
                f"{claim_margin(table):.1f} points against the full model (paper: {diffs} points at τ = {taus})")
    if claim == "scratch":
        pairs = [(s, _paper_difference(c, s)) for c, s in scratch_partners(table).items()]
        diffs = ", ".join(f"{d:+.1f} at N = {get_config(s).model.state_size}" for s, d in pairs if np.isfinite(d))
        return (f"{_DATASET[table]}: compressed models beat models trained from scratch at the same size "
                f"(paper: {diffs} points)")
    speedups = " / ".join(f"{paper_values()[c]['speedup']:.2f}x" for c in t.compressed)
    return f"{_DATASET[table]}: compressed models train faster (paper, on a GPU: {speedups} at τ = {taus})"


def implied_speedups(bench: pd.DataFrame, table: int, hardware_prefix: str = "gpu",
                     recurrence: str = "associative") -> pd.DataFrame:
    """Training speedups over the full model that measured step times imply for a paper table's configs.

    A compressed run is timed as the full model's steps up to its last reduction attempt and its final size
    (the paper's) after it: an upper bound on its time, as the earlier attempts already shrink it; a from-scratch
    run is timed at its size throughout. Evaluation and recompilation are left out. Columns: hardware,
    configuration, N, ms per step, time of the steps, implied speedup, paper speedup. Empty if the records lack
    the sizes.
    """
    steps = bench[(bench.kind == "train_step") & (bench.dataset == get_config(paper_table(table).baseline).dataset)
                  & (bench.recurrence == recurrence) & bench.hardware.str.startswith(hardware_prefix)]
    t = paper_table(table)
    paper = paper_values()
    rows = []
    for hardware, group in steps.groupby("hardware"):
        ms = group.set_index("state_size").median_ms
        full = get_config(t.baseline)
        if full.model.state_size not in ms.index:
            continue
        for name in (t.baseline, *t.compressed, *t.scratch):
            config = get_config(name)
            size = round(paper[name]["state_size"]) if name in t.compressed else config.model.state_size
            if size not in ms.index:
                continue
            at_full = config.reduction.last_step if name in t.compressed else 0
            time = at_full * ms[full.model.state_size] + (config.steps - at_full) * ms[size]
            rows.append([hardware, config_label(name), size, f"{ms[size]:.1f}",
                         f"{time / 3.6e6:.2f}{NBSP}h", f"{config.steps * ms[full.model.state_size] / time:.2f}x",
                         f"{paper[name]['speedup']:.2f}x" if paper[name]["speedup"] else "-"])
    return pd.DataFrame(rows, columns=["hardware", "configuration", "N", "ms per step", "time of the steps",
                                       "implied speedup", "paper speedup"])


def findings_table(views: dict[int, TableView], bench: pd.DataFrame) -> pd.DataFrame:
    """The Introduction's findings: each claim of the paper, our verdict in each setting, and where the evidence
    is ({doc} links; cells are MyST Markdown)."""
    rows = []
    for table in TABLES:
        view = views[table]
        found = verdicts(view)
        for claim in ("close", "scratch"):
            mine = found[found.claim == claim]
            first = claim_text(table, claim)
            for row in mine.itertuples():
                rows.append([first, row.label, f"**{row.verdict}**: {row.detail}", f"{{doc}}`{_PAGE[table]}`"])
                first = ""
            if mine.empty:
                rows.append([first, "no runs", f"**Not tested**: make them with `{reproduce_command(table, 'paper')}`",
                             f"{{doc}}`{_PAGE[table]}`"])
        if table == 2:
            drawn = [s for s in first_settings(view).values() if s is not None]
            first = ("sMNIST: the ranking of the small HSVs settles early, so early cuts are safe "
                     f"(paper: {hsv_picture_text()})")
            for setting in drawn:
                rows.append([first, setting.label, "**Shown, not scored**: the figures set our HSVs beside the paper's"
                             " picture", "{doc}`hsv_spectra`"])
                first = ""
        if table == 3:
            implied = implied_speedups(bench, table)
            implied = implied[implied.configuration.str.startswith("compressed")]
            if implied.empty:
                continue
            numbers = " / ".join(implied["implied speedup"])
            rows.append([claim_text(table, "speed"), f"step times only, {implied.hardware.iloc[0]}, associative scan",
                         f"**Not tested by training runs**: measured step times imply {numbers}",
                         f"{{doc}}`{_PAGE[table]}`"])
    return pd.DataFrame(rows, columns=["the paper's claim", "our runs", "our verdict", "evidence"])


def findings_markdown(views: dict[int, TableView], bench: pd.DataFrame) -> str:
    """`findings_table` as a Markdown table."""
    return markdown_table(findings_table(views, bench))


def verdict_markdown(view: TableView) -> str:
    """A results page's opening: the verdict on each claim in each setting, paper budget first, as a list."""
    found = verdicts(view)
    if found.empty:
        return (f"**Not tested yet**: there are no {_DATASET[view.table]} runs. Make them with "
                f"`{reproduce_command(view.table, 'paper')}`.")
    lines = []
    for index, setting in view.settings.iterrows():
        mine = found[found.setting == index].set_index("claim")
        lines.append(f"- **{setting.label}**")
        for claim in ("close", "scratch"):
            lines.append(f"  - {claim_text(view.table, claim)}. **{mine.loc[claim, 'verdict']}**: "
                         f"{mine.loc[claim, 'detail']}.")
    return "\n".join(lines)


def tradeoff_markdown(views: dict[int, TableView], bench: pd.DataFrame) -> str:
    """What the trade-off pictures show, per table, in the setting each draws (`results.lead_setting`): the
    compressed models' sizes, accuracies and measured speedups beside the full model's, or, without runs, the
    speedups that step times imply."""
    from compressm.results import lead_setting

    lines = []
    for table, view in views.items():
        setting = lead_setting(view)
        t = paper_table(table)
        if setting is None:
            implied = implied_speedups(bench, table)
            implied = implied[implied.configuration.str.startswith("compressed")]
            note = (f"; measured step times on a {implied.hardware.iloc[0]} imply training speedups of "
                    f"{' / '.join(implied['implied speedup'])} (paper {' / '.join(implied['paper speedup'])})"
                    if not implied.empty else "")
            lines.append(f"- **{_DATASET[table]}**: no runs yet{note}.")
            continue
        rows = setting_rows(view, setting).set_index("config")
        compressed = [c for c in t.compressed if c in rows.index]
        join = lambda values: " / ".join(values)
        text = (f"- **{_DATASET[table]}** ({setting.label}): compressed with τ = "
                f"{join(f'{get_config(c).reduction.tau:g}' for c in compressed)}, the models end at N = "
                f"{join(f'{rows.loc[c].size_mean:.1f}' for c in compressed)} with "
                f"{join(f'{rows.loc[c].acc_mean:.1f}' for c in compressed)} % accuracy")
        if t.baseline in rows.index:
            full = rows.loc[t.baseline]
            text += (f", against the full model's {full.acc_mean:.1f} % at N = {full.size_mean:.0f}, and train "
                     f"{join(f'{rows.loc[c].speedup:.2f}x' for c in compressed)} as fast as it")
        lines.append(text + ".")
    return "\n".join(lines)


def step_time_note(bench: pd.DataFrame, dataset: str = "smnist", hardware_prefix: str = "cpu",
                   recurrence: str = "conv", cite: bool = True) -> str:
    """One sentence on how a training step's time depends on N for one data set, hardware and recurrence, read
    off the benchmark records ('' if there are none); `cite` links the Speed page."""
    steps = bench[(bench.kind == "train_step") & (bench.dataset == dataset) & (bench.recurrence == recurrence)
                  & bench.hardware.str.startswith(hardware_prefix)]
    if steps.empty:
        return ""
    hardware, group = next(iter(steps.groupby("hardware")))
    group = group.sort_values("state_size")
    full, small = group.iloc[-1], group.iloc[:-1]
    words = {"smnist": "sMNIST", "scifar": "sCIFAR"}.get(dataset, dataset)
    return (f"On the {hardware_label(hardware)} the {words} training step with the "
            f"{RECURRENCE_WORDS.get(recurrence, recurrence)} takes "
            f"{full.median_ms:.1f} ms at N = {full.state_size} and {small.median_ms.min():.1f}-"
            f"{small.median_ms.max():.1f} ms at N = {small.state_size.min()}-{small.state_size.max()} "
            f"({'benchmark records, {doc}`speed`' if cite else 'benchmark records below'}): a compressed model's "
            f"step is at most {full.median_ms / small.median_ms.min():.1f}x faster, before the recompilation each "
            "reduction costs.")


def hsv_growth(spectra: dict[str, dict], block: int = 0) -> pd.DataFrame:
    """How one block's HSVs grow over a run, per config (`spectra`: config -> records.load_hsvs): the largest and
    the median HSV at initialisation and at the last snapshot, and the first step at which the largest reached
    90 % of its last value."""
    from compressm.records import hsv_key, snapshot_steps

    rows = []
    for config, hsvs in spectra.items():
        steps = snapshot_steps(hsvs)
        first, last = hsvs[hsv_key(steps[0], block)], hsvs[hsv_key(steps[-1], block)]
        reached = next(s for s in steps if hsvs[hsv_key(s, block)].max() >= 0.9 * last.max())
        rows.append([config_label(config), f"{first.max():.1f}", f"{np.median(first):.2f}", f"{last.max():.1f}",
                     f"{np.median(last):.2f}", f"{steps[-1]}", f"{reached}"])
    return pd.DataFrame(rows, columns=["configuration", "largest HSV at init", "median at init", "largest at the end",
                                       "median at the end", "last step", "largest at 90 % by step"])


def selection_effects(view: TableView) -> pd.DataFrame:
    """The two model-selection rules on the same runs (`selection.py`): per setting and configuration with
    runs that recorded both, the mean test accuracy under each, the paper's statistic (best-3 mean) under the
    authors' rule, the difference (authors' minus paper's) with its paired interval, and the runs the authors'
    rule would have stopped early."""
    rows = []
    for _, setting in view.settings.iterrows():
        for r in setting_rows(view, setting).itertuples():
            theirs = r.authors_by_seed
            if not theirs:
                continue
            ours = {s: r.acc_by_seed[s] for s in theirs}
            d = difference(theirs, ours)
            rows.append({"setting": setting.label, "configuration": config_label(r.config),
                         "seeds": " ".join(map(str, sorted(theirs))),
                         "paper's rule %": f"{np.mean(list(ours.values())):.2f}",
                         "authors' rule %": f"{np.mean(list(theirs.values())):.2f}",
                         "authors' rule, best-3 mean %": f"{stats.authors_aggregate(list(theirs.values()))[0]:.2f}",
                         "difference, points [95 % interval]": _interval(d),
                         "stopped early": f"{r.authors_stopped} of {len(theirs)}"})
    return pd.DataFrame(rows, columns=["setting", "configuration", "seeds", "paper's rule %", "authors' rule %",
                                       "authors' rule, best-3 mean %", "difference, points [95 % interval]",
                                       "stopped early"])


def selection_outputs(view: TableView) -> list:
    """What a results page shows of `selection_effects`: one table per setting, or a line saying none recorded."""
    return _grouped_outputs(selection_effects(view), "setting", "**{}**:",
                            "No run here recorded both rules yet (runs recorded them from the recipe change on).")


def _grouped_outputs(frame: pd.DataFrame, column: str, head: str, empty: str) -> list:
    """A page's outputs for `frame`: per value of `column`, the heading `head` (formatted with it) and the rows
    as a table without that column; the line `empty` if there are no rows."""
    from IPython.display import Markdown

    from compressm.tables import styled

    if frame.empty:
        return [Markdown(empty)]
    outputs = []
    for label, group in frame.groupby(column, sort=False):
        outputs += [Markdown(head.format(label)), styled(group.drop(columns=column))]
    return outputs


def variant_effects(view: TableView, paper_budget: bool = True) -> pd.DataFrame:
    """What today's defaults change against each variant setting of the same budget (e.g. the earlier pixel-input
    runs): per configuration with seeds on both sides, mean accuracy and size of both, and the difference
    (defaults minus variant) in points over the seeds both have, with its paired interval from two pairs."""
    settings = view.settings[view.settings.paper_budget == paper_budget]
    rows = []
    for _, ours in settings[settings.variant == ""].iterrows():
        mine = setting_rows(view, ours).set_index("config")
        for _, other in settings[(settings.variant != "") & (settings.profile == ours.profile)].iterrows():
            theirs = setting_rows(view, other).set_index("config")
            for config in (c for c in mine.index if c in theirs.index):
                a, b = mine.loc[config], theirs.loc[config]
                if not set(a.acc_by_seed) & set(b.acc_by_seed):
                    continue
                d = stats.paired_difference(a.acc_by_seed, b.acc_by_seed)
                rows.append({"against": other.label, "configuration": config_label(config),
                             "today's defaults %": mean_sd(a.acc_mean, a.acc_sd, a.n_seeds),
                             "N": f"{a.size_mean:.1f}", "variant %": mean_sd(b.acc_mean, b.acc_sd, b.n_seeds),
                             "variant N": f"{b.size_mean:.1f}",
                             "difference, points [95 % interval]": _interval(d),
                             "seeds compared": f"{d.n_a} pair{'s' if d.n_a > 1 else ''}"})
    return pd.DataFrame(rows, columns=["against", "configuration", "today's defaults %", "N", "variant %",
                                       "variant N", "difference, points [95 % interval]", "seeds compared"])


def variant_effect_outputs(view: TableView) -> list:
    """What a results page shows of `variant_effects` at the paper's budget: one table per variant setting."""
    return _grouped_outputs(variant_effects(view), "against", "**Today's defaults minus {}**:",
                            "No variant setting shares a configuration with today's defaults at this budget.")
