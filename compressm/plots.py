"""Figures of one run (training notebook) and of many runs (result pages). Each function returns a Figure."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from compressm.lru import RECURRENCES
from compressm.paper import role
from compressm.records import hsv_key, snapshot_steps


def _mark_reductions(ax, metrics: dict) -> None:
    for i, step in enumerate(sorted({e["step"] for e in metrics["reductions"]})):
        ax.axvline(step, color="0.6", lw=0.8, ls="--", label="reduction" if i == 0 else None)


def training_curves(metrics: dict) -> plt.Figure:
    """Training loss, and running train / validation accuracy against step; the test accuracy of the selected
    model (best validation) as a star at its step."""
    history = pd.DataFrame(metrics["history"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    if history.empty:
        return fig
    ax_loss.plot(history.step, history.train_loss)
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    for column, label in [("train_acc", "train (running)"), ("val_acc", "validation")]:
        ax_acc.plot(history.step, history[column], label=label)
    summary = metrics["summary"]
    ax_acc.plot([summary["best_step"]], [summary["test_acc"]], "k*", ms=10, label="test, selected model")
    ax_acc.set(xlabel="step", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        _mark_reductions(ax, metrics)
    ax_acc.legend(fontsize=8)
    return fig


def state_sizes(metrics: dict) -> plt.Figure:
    """State size of every block against step, reductions marked."""
    history = pd.DataFrame(metrics["history"])
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    if history.empty:
        return fig
    sizes = np.array(history.state_sizes.tolist())
    for block in range(sizes.shape[1]):
        ax.step(history.step, sizes[:, block], where="post", label=f"block {block}")
    _mark_reductions(ax, metrics)
    ax.set(xlabel="step", ylabel="state size N", ylim=(0, None))
    ax.legend(fontsize=8)
    return fig


def _spectrum_lines(ax, hsvs: dict, steps, block: int, lw: float) -> None:
    """Draw one block's HSV spectrum (log scale, floor 1e-12) at each of `steps` in `hsvs`, viridis early to late."""
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(steps), 1)))
    for colour, step in zip(colours, steps):
        hsv = hsvs.get(hsv_key(step, block))
        if hsv is not None:
            ax.semilogy(np.arange(1, len(hsv) + 1), np.maximum(hsv, 1e-12), color=colour, lw=lw)


def hsv_spectra(hsvs: dict, steps, blocks, title: str = "") -> plt.Figure:
    """HSV spectrum (descending, log scale) of each of `blocks` at each of `steps`, coloured early to late."""
    blocks = list(blocks)
    fig, axes = plt.subplots(1, len(blocks), figsize=(min(4 * len(blocks), 16), 3.2), squeeze=False,
                             constrained_layout=True, sharey=True)
    for block, ax in zip(blocks, axes[0]):
        _spectrum_lines(ax, hsvs, steps, block, lw=1)
        ax.set(xlabel="index", title=f"block {block}")
    axes[0][0].set_ylabel("Hankel singular value")
    if steps:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(min(steps), max(steps)))
        fig.colorbar(mappable, ax=axes[0].tolist(), label="step")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------------------
# Many runs (result pages)
# ----------------------------------------------------------------------------------------------------------
_ROLE_STYLE = {"baseline": ("^", "C0", "baseline"), "compressed": ("o", "C1", "compressed in training"),
               "scratch": ("s", "C2", "trained from scratch")}  # (marker, colour, label) per `paper.role`
# Profiles told apart by weight: the paper budget bold, the smoke check (a plumbing run, not a result) faint.
_PROFILE_STYLE = {"paper": {"ms": 9, "mec": "k"}, "cpu": {"ms": 6}, "smoke": {"ms": 4, "alpha": 0.35}}


def accuracy_vs_size(agg: pd.DataFrame, paper: dict, title: str = "") -> plt.Figure:
    """Test accuracy against final state size: ours (filled, mean +- std over seeds) and the paper's (hollow)."""
    fig, ax = plt.subplots(figsize=(8.5, 4), constrained_layout=True)
    for config_role, (marker, colour, label) in _ROLE_STYLE.items():
        ours = agg[agg.config.map(role) == config_role]
        for profile, group in ours.groupby("profile"):
            ax.errorbar(group.size_mean, group.acc_top3, xerr=group.size_std, yerr=group.acc_std, fmt=marker,
                        color=colour, capsize=3, label=f"{label}, ours ({profile} profile)",
                        **_PROFILE_STYLE.get(profile, {}))
        points = [(v["state_size"], v["accuracy"]) for name, v in paper.items()
                  if role(name) == config_role and v["accuracy"] is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, facecolors="none", edgecolors=colour, s=60,
                       label=f"{label}, published")
    ax.set(xscale="log", xlabel="final state size N (per-block mean)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def accuracy_vs_speedup(agg: pd.DataFrame, paper: dict, title: str = "") -> plt.Figure:
    """Test accuracy against training speedup over the same-hardware baseline; the paper's points hollow."""
    fig, ax = plt.subplots(figsize=(8.5, 4), constrained_layout=True)
    for config_role, (marker, colour, label) in _ROLE_STYLE.items():
        ours = agg[(agg.config.map(role) == config_role) & np.isfinite(agg.speedup)]
        for profile, group in ours.groupby("profile"):
            ax.errorbar(group.speedup, group.acc_top3, yerr=group.acc_std, fmt=marker, color=colour, capsize=3,
                        label=f"{label} (ours, {profile} profile: {', '.join(sorted(set(group.hardware)))})",
                        **_PROFILE_STYLE.get(profile, {}))
        points = [(v["speedup"], v["accuracy"]) for name, v in paper.items()
                  if role(name) == config_role and v["speedup"] and v["accuracy"] is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, facecolors="none", edgecolors=colour, s=60,
                       label=f"{label} (paper, GPU)")
    ax.set(xlabel="training speedup over the baseline", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def smallest_energy_share(hsvs: dict, fractions=(0.5, 0.75, 0.9), block: int = 0) -> pd.DataFrame:
    """Share of the Hankel energy (sum of HSVs) held by the smallest `fraction` of a block's HSVs, per step."""
    rows = []
    for step in snapshot_steps(hsvs):
        hsv = hsvs.get(hsv_key(step, block))
        if hsv is None:
            continue
        total = hsv.sum()
        rows.append({"step": step} | {f"smallest {int(f * 100)} %": hsv[len(hsv) - int(f * len(hsv)):].sum() / total
                                      for f in fractions})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# Speed (benchmark records)
# ----------------------------------------------------------------------------------------------------------
_RECURRENCE_COLOUR = dict(zip(RECURRENCES, ("C0", "C1", "C2")))


def _lines_by(ax, frame: pd.DataFrame, by: list[str], x: str, y: str, label, colour=None, fmt=None) -> None:
    """One line per group of `frame` over the columns `by`, sorted by x; label(key), colour(key) and fmt(key)
    (default 'o-') style it."""
    for key, group in frame.groupby(by):
        group = group.sort_values(x)
        ax.plot(group[x], group[y], fmt(key) if fmt else "o-", label=label(key), color=colour(key) if colour else None)


def _size_axis(ax, sizes) -> None:
    """Log-scaled x axis with a plain tick at each measured state size."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(sizes)), [str(int(s)) for s in sorted(set(sizes))])
    ax.minorticks_off()


def step_time_vs_size(bench: pd.DataFrame) -> plt.Figure:
    """Training-step time against state size, one panel per (hardware, data set), one line per recurrence."""
    steps = bench[bench.kind == "train_step"]
    panels = sorted(set(zip(steps.hardware, steps.dataset)))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), squeeze=False,
                             constrained_layout=True)
    for ax, (hardware, dataset) in zip(axes[0], panels):
        panel = steps[(steps.hardware == hardware) & (steps.dataset == dataset)]
        _lines_by(ax, panel, ["recurrence"], "state_size", "median_ms", label=lambda key: key[0],
                  colour=lambda key: _RECURRENCE_COLOUR[key[0]])
        _size_axis(ax, panel.state_size)
        ax.set(yscale="log", xlabel="state size N", ylabel="ms per training step (batch 50)",
               title=f"{dataset}\n{hardware}")
        ax.legend(fontsize=8)
    return fig


def streaming_throughput(bench: pd.DataFrame) -> plt.Figure:
    """Recurrent (one step per input) inference throughput against state size, per hardware and data set."""
    stream = bench[bench.kind == "streaming"]
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    _lines_by(ax, stream, ["hardware", "dataset"], "state_size", "steps_per_s",
              label=lambda key: f"{key[1]}, {key[0]}")
    _size_axis(ax, stream.state_size)
    ax.set(yscale="log", xlabel="state size N", ylabel="input steps per second (one stream)")
    ax.legend(fontsize=8)
    return fig


def width_sweep(bench: pd.DataFrame) -> plt.Figure:
    """Training-step time against width H at N = 64 (sMNIST shapes), per recurrence and hardware."""
    sweep = bench[bench.kind == "width_sweep"]
    fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    _lines_by(ax, sweep, ["hardware", "recurrence"], "width", "median_ms", label=lambda key: f"{key[1]}, {key[0]}",
              colour=lambda key: _RECURRENCE_COLOUR[key[1]],
              fmt=lambda key: "o--" if key[0].startswith("cpu") else "o-")  # CPU dashed, GPU solid
    _size_axis(ax, sweep.width)
    ax.set(yscale="log", xlabel="width H (N = 64, batch 50, L = 784)", ylabel="ms per training step")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# ----------------------------------------------------------------------------------------------------------
# HSV spectra of many runs
# ----------------------------------------------------------------------------------------------------------
def hsv_overview(spectra: dict[str, dict], block: int = 0) -> plt.Figure:
    """One panel per run: block `block`'s HSV spectrum at every snapshot, dark (early) to light (late).

    `spectra` maps a label (config) to that run's HSV snapshots (records.load_hsvs).
    """
    count = max(len(spectra), 1)
    cols = min(count, 4)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharey=True,
                             constrained_layout=True)
    for ax, (label, hsvs) in zip(axes.flat, spectra.items()):
        _spectrum_lines(ax, hsvs, snapshot_steps(hsvs), block, lw=0.8)
        ax.set(title=label, xlabel="index")
    for ax in axes.flat[len(spectra):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("HSV")
    return fig


def energy_share(spectra: dict[str, dict], fraction: float = 0.5, block: int = 0) -> plt.Figure:
    """Share of the Hankel energy held by the smallest `fraction` of the HSVs, against step, one line per run."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6), constrained_layout=True)
    column = f"smallest {int(fraction * 100)} %"
    for label, hsvs in spectra.items():
        share = smallest_energy_share(hsvs, (fraction,), block)
        ax.plot(share.step, share[column], ".-", label=label)
    ax.set(xlabel="step", ylabel=f"energy share of the {column} of HSVs", ylim=(0, None))
    ax.legend(fontsize=7)
    return fig


# ----------------------------------------------------------------------------------------------------------
# The paper's baselines (Baselines page)
# ----------------------------------------------------------------------------------------------------------
_METHOD_COLOUR = {"compressm": "C1", "scratch": "C2", "distillation": "C3", "regularisation": "C4", "full": "C0"}
_SOURCE_MARKER = {"paper": "o", "authors_code": "s", "secondary": "^"}


def method_comparison(ours: pd.DataFrame, paper: pd.DataFrame, x: str, labels: dict, sources: dict) -> plt.Figure:
    """Test accuracy against x = 'size' (final state size) or 'speed' (training speed relative to the full model),
    one panel per data set: ours filled (top-3 mean +- std over seeds, per profile), the paper's hollow with a
    marker per source. `ours` and `paper` are `baselines.aggregate` and `baselines.published`; labels and
    sources name methods and sources."""
    datasets = ["smnist", "scifar"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ours_x, paper_x = {"size": ("size_mean", "state_size"), "speed": ("speed", "speed")}[x]
    for dataset, ax in zip(datasets, axes):
        for method, colour in _METHOD_COLOUR.items():
            mine = ours[(ours.dataset == dataset) & (ours.method == method) & np.isfinite(ours[ours_x].astype(float))]
            for profile, group in mine.groupby("profile"):
                ax.errorbar(group[ours_x], group.acc_top3, yerr=group.acc_std, fmt="o", color=colour, capsize=3,
                            label=f"{labels.get(method, method)}, ours ({profile})", **_PROFILE_STYLE.get(profile, {}))
            theirs = paper[(paper.dataset == dataset) & (paper.method == method) & paper[paper_x].notna()]
            for source, group in theirs.groupby("source"):
                ax.scatter(group[paper_x].astype(float), group.accuracy, marker=_SOURCE_MARKER[source],
                           facecolors="none", edgecolors=colour, s=60,
                           label=f"{labels.get(method, method)}, {sources[source]}")
        ax.set(xscale="log", title={"smnist": "sMNIST", "scifar": "sCIFAR"}[dataset], ylabel="test accuracy (%)",
               xlabel="final state size N (per-block mean)" if x == "size" else
               "training speed relative to the full model (teacher included for distillation)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="lower right")
    return fig
