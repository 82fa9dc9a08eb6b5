"""Tests for compressm.plots: labels of crowded points stay readable."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from compressm import plots  # noqa: E402


def test_labels_of_crowded_points_overlap_nothing_and_sit_nearest_their_own_point():
    """Five runs within a few state sizes and 1 point of accuracy (as at the paper's budget)."""
    agg = pd.DataFrame({"config": ["smnist_tau0.01", "smnist_tau0.02", "smnist_tau0.04", "smnist_scratch_n28",
                                   "smnist_scratch_n47"],
                        "size_mean": [40.0, 29.0, 20.0, 28.0, 47.0], "size_sd": [1.4, 0.0, 0.0, 0.0, 0.0],
                        "acc_mean": [94.8, 94.9, 94.4, 94.9, 95.4], "acc_sd": [0.5, np.nan, np.nan, np.nan, np.nan]})
    fig = plots.accuracy_vs_size([("crowded", agg, {})])
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    notes = ax.texts
    assert len(notes) == len(agg)
    boxes = [note.get_window_extent(renderer) for note in notes]
    points = ax.transData.transform([note.xy for note in notes])
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for j, other in enumerate(boxes) if j != i), notes[i].get_text()
        distances = [plots._box_distance(box, point) for point in points]
        assert int(np.argmin(distances)) == i, notes[i].get_text()
