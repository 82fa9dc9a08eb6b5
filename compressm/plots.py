"""Figures of one run (training notebook) and of many runs (result pages). Each function returns a Figure."""

import functools

import matplotlib.pyplot as plt
from matplotlib.transforms import Bbox
import numpy as np
import pandas as pd

from compressm.configs import get_config
from compressm.lru import RECURRENCES
from compressm.paper import SOURCE_TAGS, role
from compressm.records import hsv_key, snapshot_steps
from compressm.results import config_label, hardware_label

# The book's figures: sized for a page about 750 px wide (a figure 7.6 inches wide is shown at about 100 px an
# inch, so 11 pt text reads at about 15 px), drawn at 150 dpi so that they stay sharp when zoomed.
BOOK_STYLE = {"figure.dpi": 150, "savefig.dpi": 150, "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
              "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10, "lines.linewidth": 1.6}


def _book_style(function):
    """Draw the figure of `function` with BOOK_STYLE, then restore those settings only (`plt.rc_context` would
    also restore `interactive`, which the notebook backend switches on when the first figure is drawn: the later
    figures of the page would then never be shown)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        before = {key: plt.rcParams[key] for key in BOOK_STYLE}
        plt.rcParams.update(BOOK_STYLE)
        try:
            return function(*args, **kwargs)
        finally:
            plt.rcParams.update(before)
    return wrapper



def _steps_axis(ax) -> None:
    """Training steps on the x axis in thousands ('50k'), so that tick labels never run into each other."""
    ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k" if x else "0")
    ax.set_xlabel("step")


def _mark_reductions(ax, metrics: dict) -> None:
    for i, step in enumerate(sorted({e["step"] for e in metrics["reductions"]})):
        ax.axvline(step, color="0.6", lw=0.8, ls="--", label="reduction" if i == 0 else None)


@_book_style
def training_curves(metrics: dict) -> plt.Figure:
    """Training loss, and running train / validation accuracy against step; the test accuracy of the selected
    model (best validation) as a star at its step."""
    history = pd.DataFrame(metrics["history"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(7.6, 3.4), layout="constrained")
    if history.empty:
        return fig
    ax_loss.plot(history.step, history.train_loss)
    _plain_log_y(ax_loss)
    ax_loss.set(ylabel="training loss")
    for column, label in [("train_acc", "train (running)"), ("val_acc", "validation")]:
        ax_acc.plot(history.step, history[column], label=label)
    summary = metrics["summary"]
    ax_acc.plot([summary["best_step"]], [summary["test_acc"]], "k*", ms=10, label="test, selected model")
    ax_acc.set(xlabel="step", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        _mark_reductions(ax, metrics)
        _steps_axis(ax)
    _legend_below(fig, [ax_loss, ax_acc])
    return fig


@_book_style
def state_sizes(metrics: dict) -> plt.Figure:
    """State size of every block against step, reductions marked."""
    history = pd.DataFrame(metrics["history"])
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    if history.empty:
        return fig
    sizes = np.array(history.state_sizes.tolist())
    for block in range(sizes.shape[1]):
        ax.step(history.step, sizes[:, block], where="post", label=f"block {block}")
    _mark_reductions(ax, metrics)
    _steps_axis(ax)
    ax.set(ylabel="state size N", ylim=(0, None))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def _spectrum_lines(ax, hsvs: dict, steps, block: int, lw: float) -> None:
    """Draw one block's HSV spectrum (log scale, floor 1e-12) at each of `steps` in `hsvs`, viridis early to late."""
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(steps), 1)))
    for colour, step in zip(colours, steps):
        hsv = hsvs.get(hsv_key(step, block))
        if hsv is not None:
            ax.semilogy(np.arange(1, len(hsv) + 1), np.maximum(hsv, 1e-12), color=colour, lw=lw)


@_book_style
def hsv_spectra(hsvs: dict, steps, blocks, title: str = "") -> plt.Figure:
    """HSV spectrum (descending, log scale) of each of `blocks` at each of `steps`, coloured early to late."""
    blocks = list(blocks)
    fig, axes = _panel_grid(len(blocks), width=7.6, height=3.0, cols=3)
    for block, ax in zip(blocks, axes):
        _spectrum_lines(ax, hsvs, steps, block, lw=1)
        ax.set(xlabel="index", ylabel="Hankel singular value", title=f"block {block}")
    if steps:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(min(steps), max(steps)))
        fig.colorbar(mappable, ax=axes, label="step")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------------------
# Many runs (result pages)
# ----------------------------------------------------------------------------------------------------------
_ROLE_STYLE = {"baseline": ("^", "C0", "full model"), "compressed": ("o", "C1", "compressed"),
               "scratch": ("s", "C2", "from scratch")}  # (marker, colour, label) per `paper.role`


def _point_label(config: str) -> str:
    """'full', 'τ 0.02' or 'N 28': the short label written beside a point."""
    kind = role(config)
    if kind == "baseline":
        return "full"
    return f"τ {get_config(config).reduction.tau:g}" if kind == "compressed" else \
        f"N {get_config(config).model.state_size}"


def _panel_grid(count: int, width: float = 7.6, height: float = 3.6, cols: int = 2):
    """A constrained-layout figure with `count` panels (at most `cols` a row) and the axes as a flat list."""
    count = max(count, 1)
    cols = min(cols, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.axis("off")
    return fig, list(axes.flat[:count])


def _nothing_yet(ax) -> plt.Figure:
    """An empty panel that says there are no runs to draw; returns its figure."""
    ax.axis("off")
    ax.text(0.5, 0.5, "no runs here yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.figure.set_size_inches(7.6, 1.2)
    return ax.figure


def _legend_below(fig, axes) -> None:
    """One legend for the figure, below the panels (never over the data), without repeated entries."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        columns = 3 if max(map(len, entries)) <= 22 else 2
        fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=min(len(entries), columns),
                   frameon=False)


def _paper_points(ax, paper: dict, x_key: str) -> None:
    for config_role, (marker, colour, label) in _ROLE_STYLE.items():
        points = [(v[x_key], v["accuracy"]) for name, v in paper.items()
                  if role(name) == config_role and v[x_key] and v["accuracy"] is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, facecolors="none", edgecolors=colour, s=70, lw=1.5,
                       label=f"{label}, paper" if x_key == "state_size" else f"{label}, paper (GPU)")


def _box_distance(box, point) -> float:
    """Display distance from a Bbox to a point (0 inside it)."""
    return float(np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1)))


def _place_labels(ax, labels: list[tuple[str, float, float, str]]) -> None:
    """Write each (text, x, y, colour) label near its point, at the first of a ring of offsets where it covers no
    point or earlier label and no other point is nearer to it than its own (else the last offset; far ones get a
    leader line). Call once the axes' scales and limits are set."""
    renderer = ax.figure.canvas.get_renderer()
    near = [((6, 3), "left"), ((6, -11), "left"), ((-6, 3), "right"), ((-6, -11), "right"), ((0, 9), "center"),
            ((0, -17), "center")]
    far = [((18, 16), "left"), ((18, -24), "left"), ((-18, 16), "right"), ((-18, -24), "right"), ((0, 26), "center"),
           ((0, -34), "center")]
    points = ax.transData.transform([(x, y) for _, x, y, _ in labels]) if labels else []
    placed = [Bbox.from_bounds(px - 5, py - 5, 10, 10) for px, py in points]  # the points themselves
    for i, (text, x, y, colour) in enumerate(labels):
        for offset, align in near + far:
            line = {"arrowstyle": "-", "color": colour, "lw": 0.6, "shrinkB": 5} if (offset, align) in far else None
            note = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=9, color=colour,
                               ha=align, va="bottom", arrowprops=line)
            box = note.get_window_extent(renderer)
            own = _box_distance(box, points[i])
            clear = (not any(box.overlaps(other) for other in placed)
                     and all(own < _box_distance(box, p) for j, p in enumerate(points) if j != i))
            if clear or (offset, align) == far[-1]:
                break
            note.remove()
        placed.append(box)


@_book_style
def accuracy_vs_size(panels: list[tuple[str, pd.DataFrame | None, dict]], cols: int = 2) -> plt.Figure:
    """Test accuracy against final state size, one panel per (title, aggregate rows of one setting or None, the
    paper's values for the panel): ours filled (mean over seeds, error bars one sample std) and labelled, the
    paper's hollow. Without panels, one panel of `paper`-less axes says there is nothing to draw."""
    fig, axes = _panel_grid(len(panels), cols=min(cols, max(len(panels), 1)))
    for ax, (title, agg, paper) in zip(axes, panels or [("no runs of ours here yet", None, {})]):
        _paper_points(ax, paper, "state_size")
        labels = []
        for config_role, (marker, colour, label) in _ROLE_STYLE.items():
            ours = agg[agg.config.map(role) == config_role] if agg is not None else None
            if ours is None or ours.empty:
                continue
            ax.errorbar(ours.size_mean, ours.acc_mean, xerr=np.nan_to_num(ours.size_sd),
                        yerr=np.nan_to_num(ours.acc_sd), fmt=marker, color=colour, ms=7, capsize=3,
                        label=f"{label}, ours")
            labels += [(_point_label(row.config), row.size_mean, row.acc_mean, colour) for row in ours.itertuples()]
        ax.set(xscale="log", xlabel="final state size N (per-block mean)", ylabel="test accuracy (%)")
        ax.margins(x=0.08)  # room for the point labels
        low, high = ax.get_xlim()
        ax.set_xticks([t for t in (5, 10, 20, 30, 50, 100, 200, 300, 500) if low <= t <= high] or [low, high])
        ax.xaxis.set_major_formatter("{x:g}")
        ax.minorticks_off()
        _place_labels(ax, labels)
        ax.set_title(title.replace(" · ", "\n"), fontsize=10)
    _legend_below(fig, axes)
    return fig


@_book_style
def accuracy_vs_speedup(panels: list[tuple[str, pd.DataFrame | None, dict]], cols: int = 2) -> plt.Figure:
    """Test accuracy against training speedup over the full model, one panel per (title, aggregate rows of one
    setting or None, the paper's values for the panel); ours filled and labelled, the paper's hollow."""
    fig, axes = _panel_grid(len(panels), cols=cols)
    for ax, (title, agg, paper) in zip(axes, panels):
        _paper_points(ax, paper, "speedup")
        labels = []
        if agg is not None:
            for config_role, (marker, colour, label) in _ROLE_STYLE.items():
                ours = agg[(agg.config.map(role) == config_role) & np.isfinite(agg.speedup)]
                if ours.empty:
                    continue
                ax.errorbar(ours.speedup, ours.acc_mean, yerr=np.nan_to_num(ours.acc_sd), fmt=marker, color=colour,
                            ms=7, capsize=3, label=f"{label}, ours")
                labels += [(_point_label(row.config), row.speedup, row.acc_mean, colour) for row in ours.itertuples()]
        ax.margins(x=0.1)  # room for the point labels
        ax.set(xlabel="training speedup over the full model", ylabel="test accuracy (%)")
        _place_labels(ax, labels)
        ax.set_title(title.replace(" · ", "\n"), fontsize=10)
    _legend_below(fig, axes)
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


def _plain_log_y(ax) -> None:
    """A log-scaled y axis labelled with plain numbers ("20", not "2 x 10^1") at 1, 2, 3 and 5 times powers of ten."""
    def minor(x, _):
        return f"{x:g}" if x > 0 and round(x / 10 ** np.floor(np.log10(x))) in (2, 3, 5) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter("{x:g}")
    ax.yaxis.set_minor_formatter(minor)


def _size_axis(ax, sizes) -> None:
    """Log-scaled x axis with a plain tick at each measured state size."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(sizes)), [str(int(s)) for s in sorted(set(sizes))])
    ax.minorticks_off()


@_book_style
def step_time_vs_size(bench: pd.DataFrame) -> plt.Figure:
    """Training-step time against state size, one panel per (hardware, data set), one line per recurrence."""
    steps = bench[bench.kind == "train_step"]
    panels = sorted(set(zip(steps.hardware, steps.dataset)))
    fig, axes = _panel_grid(len(panels), height=3.3)
    for ax, (hardware, dataset) in zip(axes, panels):
        panel = steps[(steps.hardware == hardware) & (steps.dataset == dataset)]
        _lines_by(ax, panel, ["recurrence"], "state_size", "median_ms", label=lambda key: key[0],
                  colour=lambda key: _RECURRENCE_COLOUR[key[0]])
        _size_axis(ax, panel.state_size)
        _plain_log_y(ax)
        ax.set(xlabel="state size N", ylabel="ms per step (batch 50)",
               title=f"{dataset}, {hardware_label(hardware)}")
    _legend_below(fig, axes)
    return fig


@_book_style
def streaming_throughput(bench: pd.DataFrame) -> plt.Figure:
    """Recurrent (one step per input) inference throughput against state size, per hardware and data set."""
    stream = bench[bench.kind == "streaming"]
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    _lines_by(ax, stream, ["hardware", "dataset"], "state_size", "steps_per_s",
              label=lambda key: f"{key[1]}, {hardware_label(key[0])}")
    _size_axis(ax, stream.state_size)
    ax.set(yscale="log", xlabel="state size N", ylabel="input steps per second (one stream)")
    _legend_below(fig, [ax])
    return fig


@_book_style
def width_sweep(bench: pd.DataFrame) -> plt.Figure:
    """Training-step time against width H at N = 64 (sMNIST shapes), per recurrence and hardware (the sweep's
    other state sizes are in `results.fastest_recurrence`)."""
    sweep = bench[(bench.kind == "width_sweep") & (bench.state_size == 64)]
    fig, ax = plt.subplots(figsize=(7.6, 4.0), layout="constrained")
    _lines_by(ax, sweep, ["hardware", "recurrence"], "width", "median_ms",
              label=lambda key: f"{key[1]}, {hardware_label(key[0])}",
              colour=lambda key: _RECURRENCE_COLOUR[key[1]],
              fmt=lambda key: "o--" if key[0].startswith("cpu") else "o-")  # CPU dashed, GPU solid
    _size_axis(ax, sweep.width)
    _plain_log_y(ax)
    ax.set(xlabel="width H (N = 64, batch 50, L = 784)", ylabel="ms per training step")
    _legend_below(fig, [ax])
    return fig


# ----------------------------------------------------------------------------------------------------------
# HSV spectra of many runs
# ----------------------------------------------------------------------------------------------------------
@_book_style
def hsv_overview(spectra: dict[str, dict], block: int = 0) -> plt.Figure:
    """One panel per run, two a row: block `block`'s HSV spectrum at every snapshot, dark (early) to light (late),
    on one shared colour scale of steps.

    `spectra` maps a config name to one run's HSV snapshots (records.load_hsvs).
    """
    fig, axes = _panel_grid(len(spectra), height=2.9)
    if not spectra:
        return _nothing_yet(axes[0])
    steps = sorted({s for hsvs in spectra.values() for s in snapshot_steps(hsvs)})
    for ax, (config, hsvs) in zip(axes, spectra.items()):
        _spectrum_lines(ax, hsvs, snapshot_steps(hsvs), block, lw=0.9)
        ax.set(title=config_label(config), xlabel="index (largest first)", ylabel="HSV")
    if steps:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(min(steps), max(steps)))
        fig.colorbar(mappable, ax=axes, label="step", shrink=0.6)
    return fig


@_book_style
def energy_share(spectra: dict[str, dict], fraction: float = 0.5, block: int = 0) -> plt.Figure:
    """Share of the Hankel energy held by the smallest `fraction` of the HSVs, against step, one line per run
    (`spectra`: config name -> HSV snapshots; compressed runs solid, the others dashed), the legend beside."""
    fig, ax = plt.subplots(figsize=(7.6, 3.8), layout="constrained")
    if not spectra:
        return _nothing_yet(ax)
    column = f"smallest {int(fraction * 100)} %"
    for config, hsvs in spectra.items():
        share = smallest_energy_share(hsvs, (fraction,), block)
        ax.plot(share.step, share[column], "-" if role(config) == "compressed" else "--", marker=".",
                label=config_label(config))
    ax.set(ylabel=f"share of the {column}", ylim=(0, None))
    _steps_axis(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


# ----------------------------------------------------------------------------------------------------------
# The paper's baselines (Baselines page)
# ----------------------------------------------------------------------------------------------------------
_METHOD_COLOUR = {"compressm": "C1", "scratch": "C2", "distillation": "C3", "regularisation": "C4", "full": "C0"}
_SOURCE_MARKER = {"paper": "o", "authors": "s", "secondary": "^"}
_PROFILE_MARKER = {"paper": "o", "cpu": "D"}  # ours, filled: the budget a point was trained at


@_book_style
def method_comparison(ours: pd.DataFrame, paper: pd.DataFrame, x: str, labels: dict) -> plt.Figure:
    """Test accuracy against x = 'size' (final state size) or 'speed' (training speed relative to the full model),
    one panel per data set: ours filled (mean +- sample std over seeds, per profile), the paper's hollow with a
    marker per source (`paper.SOURCE_TAGS`). `ours` and `paper` are `baselines.aggregate` and
    `baselines.published`; `labels` names the methods."""
    datasets = ["smnist", "scifar"]
    fig, axes = _panel_grid(2, height=3.8)
    ours_x, paper_x = {"size": ("size_mean", "state_size"), "speed": ("speed", "speed")}[x]
    for dataset, ax in zip(datasets, axes):
        for method, colour in _METHOD_COLOUR.items():
            mine = ours[(ours.dataset == dataset) & (ours.method == method) & np.isfinite(ours[ours_x].astype(float))]
            for profile, group in mine.groupby("profile"):
                ax.errorbar(group[ours_x], group.acc_mean, yerr=group.acc_sd.fillna(0), color=colour, capsize=3,
                            fmt=_PROFILE_MARKER.get(profile, "o"), label=f"{labels.get(method, method)}, ours ({profile})")
            theirs = paper[(paper.dataset == dataset) & (paper.method == method) & paper[paper_x].notna()]
            for source, group in theirs.groupby("source"):
                ax.scatter(group[paper_x].astype(float), group.accuracy, marker=_SOURCE_MARKER[source],
                           facecolors="none", edgecolors=colour, s=60,
                           label=f"{labels.get(method, method)}, {SOURCE_TAGS[source]}")
        ax.set(xscale="log", title={"smnist": "sMNIST", "scifar": "sCIFAR"}[dataset], ylabel="test accuracy (%)",
               xlabel="final state size N (per-block mean)" if x == "size" else "speed vs the full model")
        ax.xaxis.set_major_formatter("{x:g}")
        ax.xaxis.set_minor_formatter(lambda v, _: f"{v:g}" if x == "speed" and v in (0.05, 0.2, 0.5, 2, 5) else "")
    _legend_below(fig, axes)
    return fig
