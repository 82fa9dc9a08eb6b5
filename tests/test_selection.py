"""Model selection: the paper's rule and the authors' trainer's, on hand-made histories and on a training run."""

import math

from test_train import _fake_mnist_dataset, _tiny

from compressm.selection import PATIENCE, RULES, select, start
from compressm.train import train


def _walk(rule, evals):
    """Run `select` over evaluations (val, val_after or None, reduced); the chosen (val, step) after each."""
    chosen, out = start(rule), []
    for step, (val, val_after, reduced) in enumerate(evals, start=1):
        chosen = select(rule, chosen, val, val if val_after is None else val_after, reduced, step, {"step": step})
        out.append((chosen.val, chosen.step, chosen.stopped))
    return out


def test_paper_rule_resets_to_the_reduced_model_and_needs_strict_improvement():
    evals = [(0.5, None, False), (0.5, None, False), (0.6, 0.4, True), (0.45, None, False), (0.44, None, False)]
    assert _walk("paper", evals) == [(0.5, 1, 0), (0.5, 1, 0), (0.4, 3, 0), (0.45, 4, 0), (0.45, 4, 0)]


def test_authors_rule_keeps_the_best_counts_ties_and_takes_the_just_reduced_model():
    evals = [(0.5, None, False), (0.5, None, False), (0.4, 0.3, True), (0.45, None, False), (0.7, None, False)]
    assert _walk("authors", evals) == [(0.5, 1, 0), (0.5, 2, 0), (0.5, 3, 0), (0.5, 3, 0), (0.7, 5, 0)]


def test_authors_rule_stops_after_more_than_patience_evaluations_without_improvement():
    evals = [(0.9, None, False)] + [(0.8, None, False)] * (PATIENCE + 3)
    walked = _walk("authors", evals)
    assert [stopped for *_, stopped in walked].index(PATIENCE + 2) == PATIENCE + 1  # the 11th without improvement
    assert walked[-1] == (0.9, 1, PATIENCE + 2)
    # a reduction resets the count, unless it comes at the evaluation that stops (their check runs first)
    flat, reduced = (0.8, None, False), (0.8, None, True)
    reset = [(0.9, None, False)] + [flat] * (PATIENCE - 1) + [reduced] + [flat] * 3
    assert all(stopped == 0 for *_, stopped in _walk("authors", reset))
    late = [(0.9, None, False)] + [(0.8, None, False)] * PATIENCE + [(0.8, None, True)]
    assert _walk("authors", late)[-1] == (0.9, 1, PATIENCE + 2)


def test_a_run_records_both_rules_and_the_authors_outcome_equals_a_run_under_their_rule():
    """The authors' rule reads the history up to its stop, so the 'paper' run's record of it equals the run
    trained under it (patience made reachable with a constant validation set: tiny data, many evaluations)."""
    overrides = {"steps": 60, "eval_every": 2, "reduction.last_step": 8}
    paper_cfg, authors_cfg = _tiny(**overrides), _tiny(**overrides, model_selection="authors")
    dataset = _fake_mnist_dataset(paper_cfg, 5)
    paper = train(paper_cfg, 5, dataset, progress=False).metrics
    authors = train(authors_cfg, 5, dataset, progress=False).metrics
    assert set(paper["selection"]) == set(RULES)
    recorded = paper["selection"]["authors"]
    assert authors["selection"]["authors"] == recorded
    assert authors["summary"]["test_acc"] == recorded["test_acc"] and not math.isnan(recorded["test_acc"])
    assert paper["summary"]["test_acc"] == paper["selection"]["paper"]["test_acc"]
    if recorded["stopped_step"]:  # training ended there, with the same history up to it
        assert authors["summary"]["steps_done"] == recorded["stopped_step"] < paper["summary"]["steps_done"]
    strip = lambda m: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in m["history"]]
    assert strip(authors) == strip(paper)[: len(authors["history"])]
