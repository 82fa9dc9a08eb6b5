"""Figures of one run (training notebook) and of many runs (result pages). Each function returns a Figure."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from compressm.compression import hsv_key


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


def hsv_spectra(hsvs: dict, steps, num_blocks: int, title: str = "") -> plt.Figure:
    """HSV spectrum (descending, log scale) of every block at each of `steps`, coloured from early to late."""
    fig, axes = plt.subplots(1, num_blocks, figsize=(min(4 * num_blocks, 16), 3.2), squeeze=False,
                             constrained_layout=True, sharey=True)
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(steps), 1)))
    for block, ax in enumerate(axes[0]):
        for colour, step in zip(colours, steps):
            key = hsv_key(step, block)
            if key in hsvs:
                hsv = hsvs[key]
                ax.semilogy(np.arange(1, len(hsv) + 1), np.maximum(hsv, 1e-12), color=colour, lw=1)
        ax.set(xlabel="index", title=f"block {block}")
    axes[0][0].set_ylabel("Hankel singular value")
    if steps:
        mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(min(steps), max(steps)))
        fig.colorbar(mappable, ax=axes[0].tolist(), label="step")
    if title:
        fig.suptitle(title)
    return fig
