"""Model selection: which evaluation's model a run reports, by the paper's rule or by the authors' trainer.

    chosen = select(rule, chosen, val, val_after, reduced, step, variables)   # after each evaluation

Both rules evaluate every `eval_every` steps and report the test accuracy of the model they hold at the end.
- "paper" (the paper's text): keep the model with the best validation accuracy; after a reduction the reduced
  model is kept at once, and the best accuracy is reset to its re-measured validation accuracy (`val_after`),
  so the reported model has the final size. Strict improvements only.
- "authors" (the trainer that made the paper's tables, `training/train.py` of release/v1.0.0): keep the model
  whenever the validation accuracy (measured before the evaluation's reduction attempt) is at least the best
  so far, or the attempt reduced it; the best accuracy is never reset (it starts at 0). Training stops after
  more than PATIENCE evaluations in a row with an accuracy at most the best (ties and reductions reset the count).

A run tracks both (`train.py`): the one its config names is in force (its test_acc, and its early stop ends the
run), the other is recorded beside it. The authors' rule reads only the history up to its stop, so a "paper"
run gives the authors' outcome exactly, as if it had been trained with their rule.
"""

import math
from typing import NamedTuple

RULES = ("paper", "authors")
PATIENCE = 10  # the authors' trainer stops once more than this many evaluations in a row did not improve


class Chosen(NamedTuple):
    """A rule's state: its best validation accuracy, the step and variables of the model it holds (None before
    the first evaluation), evaluations in a row without improvement, and the step it stopped at (0: going on)."""

    val: float
    step: int
    variables: dict | None
    stale: int = 0
    stopped: int = 0


def start(rule: str) -> Chosen:
    """A rule's state before the first evaluation (the authors' trainer starts its best accuracy at 0)."""
    return Chosen(0.0 if rule == "authors" else -math.inf, 0, None)


def select(rule: str, chosen: Chosen, val: float, val_after: float, reduced: bool, step: int,
           variables: dict) -> Chosen:
    """The rule's state after the evaluation at `step`: `val` measured before the reduction attempt,
    `val_after` after it (equal to val when nothing was reduced), `variables` the model after it."""
    if rule == "paper":
        if reduced:
            return Chosen(val_after, step, variables)
        return Chosen(val, step, variables) if val > chosen.val else chosen
    if chosen.stopped:
        return chosen
    stale = chosen.stale + 1 if val <= chosen.val else chosen.stale
    if stale > PATIENCE:
        return chosen._replace(stale=stale, stopped=step)
    if val >= chosen.val or reduced:
        return Chosen(max(val, chosen.val), step, variables)
    return chosen._replace(stale=stale)
