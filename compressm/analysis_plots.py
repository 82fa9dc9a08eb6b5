"""Figures of the Ablations and HSV-dynamics pages. Each function returns a Figure; ours filled, the paper's hollow
with a marker per source (`paper.SOURCE_TAGS`)."""

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from compressm import dynamics
from compressm.analysis import Ablation, label, paper_numbers
from compressm.paper import SOURCE_TAGS

_SOURCE_MARKER = {"paper": "D", "secondary": "s", "figure": "^", "authors": "v"}


def _finish(ax, drew_ours: bool, **legend) -> None:
    """A note in the middle if none of our runs is drawn; a legend if anything is labelled."""
    if not drew_ours:
        ax.text(0.5, 0.5, "no complete runs of ours yet", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **legend)


def _paper_points(ax, points: list[tuple[float, float, str]], colour: str = "k", what: str = "") -> None:
    """Hollow markers at (x, y, source), one legend entry per source, `what` leading the label."""
    for source in sorted({s for _, _, s in points}):
        xs, ys = zip(*[(x, y) for x, y, s in points if s == source])
        ax.scatter(xs, ys, marker=_SOURCE_MARKER[source], facecolors="none", edgecolors=colour, s=55, zorder=3,
                   label=f"{what}{SOURCE_TAGS[source]}")


def group_accuracy(ours: pd.DataFrame, group: Ablation, ours_label: str = "ours", title: str = "") -> plt.Figure:
    """Test accuracy of each config of a group: ours (`ours`: one setting's aggregate rows indexed by config, as
    `analysis.setting_rows` gives them; the mean, error bar the sample std over seeds, with the final state size
    written beside) and the paper's where it gives one, hollow."""
    configs = list(group.configs)
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(configs) + 1.4), constrained_layout=True)
    rows = [(k, ours.loc[c]) for k, c in enumerate(configs) if c in ours.index]
    if rows:
        at = [k for k, _ in rows]
        ax.errorbar([r.acc_mean for _, r in rows], at, xerr=[np.nan_to_num(r.acc_sd) for _, r in rows], fmt="o",
                    color="C0", capsize=3, label=ours_label)
        for pos, (_, r) in zip(at, rows):
            ax.annotate(f"N = {r.size_mean:.0f}", (r.acc_mean, pos), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=7)
    points = [(p["accuracy"], k, p["source"]) for k, c in enumerate(configs)
              if (p := paper_numbers(c)) and p["accuracy"] is not None]
    if points:
        _paper_points(ax, points)
    ax.set_yticks(range(len(configs)), [label(group, c) for c in configs])
    ax.set_ylim(len(configs) - 0.4, -0.6)
    ax.grid(axis="x", color="0.9")
    ax.set(xlabel="test accuracy (%)", title=title or group.title)
    _finish(ax, bool(rows), loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def tau_curve(ours: pd.DataFrame, compressed: list[str], scratch: list[str], baseline: str,
              ours_label: str = "ours", title: str = "") -> plt.Figure:
    """Accuracy against final state size: the compressed (tau) runs as one curve and the from-scratch runs as
    another, the baseline as a point; ours filled (`ours`: one setting's rows indexed by config), the paper's
    hollow and dotted, marker by source."""
    fig, ax = plt.subplots(figsize=(8.5, 4), constrained_layout=True)
    roles = ((compressed, "o-", "C1", "compressed in training"), (scratch, "s--", "C2", "from scratch"),
             ([baseline], "^", "C0", "baseline"))
    drew = False
    for configs, fmt, colour, what in roles:
        rows = ours.loc[[c for c in configs if c in ours.index]].sort_values("size_mean")
        if len(rows):
            drew = True
            ax.errorbar(rows.size_mean, rows.acc_mean, xerr=np.nan_to_num(rows.size_sd.to_numpy(dtype=float)),
                        yerr=np.nan_to_num(rows.acc_sd.to_numpy(dtype=float)), fmt=fmt, color=colour, capsize=3,
                        label=f"{what}, {ours_label}")
    for configs, _, colour, what in roles:
        points = sorted((p["state_size"], p["accuracy"], p["source"]) for c in configs
                        if (p := paper_numbers(c)) and p["accuracy"] is not None)
        if points:
            ax.plot([x for x, _, _ in points], [y for _, y, _ in points], ":", color=colour, lw=1)
            _paper_points(ax, points, colour, f"{what}, ")
    ax.set(xscale="log", xlabel="final state size N (per-block mean)", ylabel="test accuracy (%)", title=title)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([8, 16, 32, 64, 128, 256])
    _finish(ax, drew, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def size_trajectories(runs: dict[str, dict[int, dict]], title: str = "") -> plt.Figure:
    """State size (block 0) against step for each run, one colour per config; rollbacks marked x.

    `runs` maps a label to {seed: metrics.json} (`analysis.result_records`)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6), constrained_layout=True)
    for i, (name, by_seed) in enumerate(runs.items()):
        for j, (seed, m) in enumerate(by_seed.items()):
            history = pd.DataFrame(m["history"])
            if history.empty:
                continue
            sizes = [s[0] for s in history.state_sizes]
            ax.step(history.step, sizes, where="post", color=f"C{i}", lw=1, alpha=0.8,
                    label=name if j == 0 else None)
            for rollback in m["rollbacks"]:
                at = history.step.searchsorted(rollback["step"])
                ax.plot(rollback["step"], sizes[min(at, len(sizes) - 1)], "x", color=f"C{i}", ms=8,
                        label="rollback" if i == j == 0 else None)
    ax.set(xlabel="step", ylabel="state size N", yscale="log", title=title)
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([4, 8, 16, 32, 64, 128, 256])
    _finish(ax, any(runs.values()))
    return fig


# ----------------------------------------------------------------------------------------------------------
# HSV dynamics (the paper's Fig. 2)
# ----------------------------------------------------------------------------------------------------------
def _tracked_indices(n: int, count: int = 4) -> list[int]:
    """Tracks to draw: the `count` largest, `count` around the middle and the `count` smallest."""
    picks = [*range(count), *range(n // 2 - count // 2, n // 2 + count - count // 2), *range(n - count, n)]
    return sorted(set(i for i in picks if 0 <= i < n))


_PANELS = ("(a) Hankel singular values (dark: largest)", "(b) how far any HSV can move",
           "(c) tracked HSVs, band: previous value ± interval bound", "(d) energy of the smallest HSVs")


def dynamics_panels(arrays: dict | None, block: int = 0, bottom_fractions=(0.125, 0.25, 0.5), taus=(0.01, 0.02, 0.04),
                    banded: int = 4, title: str = "") -> plt.Figure:
    """The four panels of the paper's Fig. 2 from a dynamics record (`records.load_dynamics`):
    (a) every HSV against step; (b) the Weyl bound ||dH||_2 per step and per recorded interval, beside the median
    gap between adjacent HSVs; (c) a few HSVs tracked by eigenvector overlap (`dynamics.track`), each with the
    band +- the interval bound around its previous value (for the `banded` largest: around the smaller ones the
    band may cover the panel); (d) the energy share of the bottom r HSVs, r = fraction * N. Without a record
    (None or {}), the four panels empty, with a note."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    if title:
        fig.suptitle(title)
    if not arrays:  # no record yet: the four empty panels, titled
        for ax, panel in zip(axes.flat, _PANELS):
            ax.set(title=panel, xlabel="step")
            _finish(ax, False)
        return fig
    steps, hsv = arrays["step"], arrays["hsv"][:, block]
    b_step, b_int = arrays["bound_step"][:, block], arrays["bound_interval"][:, block]
    n = hsv.shape[1]
    ax = axes[0, 0]
    colours = plt.cm.viridis(np.linspace(0, 1, n))
    for k in range(n):
        ax.plot(steps, hsv[:, k], color=colours[k], lw=0.5)
    ax.set(yscale="log", xlabel="step", ylabel="HSV", title=_PANELS[0])
    ax = axes[0, 1]
    ax.plot(steps, b_step, ".", ms=3, label="Weyl bound, one step")
    ax.plot(steps, b_int, "-", lw=0.8, label=f"Weyl bound, {int(steps[1] - steps[0]) if len(steps) > 1 else 0} steps")
    ax.plot(steps, np.median(-np.diff(hsv, axis=1), axis=1), "k:", lw=1, label="median gap between adjacent HSVs")
    ax.set(yscale="log", xlabel="step", ylabel="||dH||_2", title=_PANELS[1])
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    tracked = dynamics.track(hsv, arrays["match"][:, block])
    floor = 0.5 * hsv.min()  # a band reaching below zero is drawn to the bottom of the log axis
    for k in _tracked_indices(n):
        line = tracked[:, k]
        ax.plot(steps, line, color=colours[k], lw=0.8)
        if k < banded:
            ax.fill_between(steps[1:], np.maximum(line[:-1] - b_int[1:], floor), line[:-1] + b_int[1:],
                            color=colours[k], alpha=0.2, lw=0)
    ax.set(yscale="log", ylim=(floor, None), xlabel="step", ylabel="tracked HSV",
           title=_PANELS[2])
    ax = axes[1, 1]
    for fraction in bottom_fractions:
        r = int(fraction * n)
        ax.plot(steps, dynamics.bottom_energy(hsv, r), label=f"bottom {r} of {n}")
    for tau in taus:
        ax.axhline(tau, color="0.5", lw=0.6, ls="--")
        ax.text(steps[-1], tau, f"tau = {tau}", fontsize=6, ha="right", va="bottom", color="0.4")
    ax.set(yscale="log", xlabel="step", ylabel="share of the sum of HSVs", title=_PANELS[3])
    ax.legend(fontsize=7)
    return fig
