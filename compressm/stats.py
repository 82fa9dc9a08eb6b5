"""Statistics over seeds, as the book reports them.

Over the seeds of one configuration: the mean of all seeds with the SAMPLE standard deviation (ddof = 1) and the
t interval of the mean (the honest statistic), and, beside them, the paper's own aggregate as the authors' script
computes it (`authors_aggregate`: the mean of the best three seeds, which can only rise as seeds are added, and
the ddof = 0 std over all seeds).

Between two configurations (compressed against from scratch, compressed against the full model): the difference
of their means with a paired t interval over the seeds both have (`paired_difference`: a seed fixes the data
order, the dropout masks and the initialisation outside the LRU in every configuration), or a Welch t interval
(unequal variances, Welch-Satterthwaite degrees of freedom; Welch 1947) where seeds do not pair. With few seeds
the interval is wide: that is the honest size of what they can tell; `seeds_to_decide` estimates how many would.
"""

from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

LEVEL = 0.95  # confidence level of every interval in the book


class SeedSummary(NamedTuple):
    """One configuration over its seeds."""

    n: int
    mean: float
    sd: float  # sample standard deviation (ddof = 1); nan for one seed
    top3: float  # mean of the three best seeds (the paper's aggregate); the mean itself for n <= 3


class Difference(NamedTuple):
    """mean(a) - mean(b) with its Welch interval; low = high = nan when a side has fewer than two seeds."""

    estimate: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite degrees of freedom (nan where undefined)
    n_a: int
    n_b: int
    paired: bool = False  # a paired t interval over shared seeds (`paired_difference`), else Welch's

    @property
    def tested(self) -> bool:
        """Whether the interval exists (two or more seeds on each side)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


def summarize(values) -> SeedSummary:
    """Mean, sample std (ddof = 1) and top-3 mean of a configuration's per-seed values (1-D, any length >= 1)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarize needs a non-empty 1-D sequence of per-seed values, got shape {x.shape}")
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return SeedSummary(int(x.size), float(x.mean()), sd, float(np.sort(x)[::-1][:3].mean()))


def welch_difference(a, b, level: float = LEVEL) -> Difference:
    """mean(a) - mean(b) and its Welch t interval at `level` (two-sided), from per-seed values a, b (1-D).

    Where both samples have zero variance the interval collapses to the point estimate (df is then nan).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Difference(estimate, float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return Difference(estimate, estimate, estimate, float("nan"), int(a.size), int(b.size))
    result = _scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(confidence_level=level)
    return Difference(estimate, float(interval.low), float(interval.high), float(result.df), int(a.size),
                      int(b.size))


class Ratio(NamedTuple):
    """sd(a) / sd(b) with its F interval; low = high = nan when a side has fewer than two seeds."""

    estimate: float
    low: float
    high: float
    n_a: int
    n_b: int

    @property
    def tested(self) -> bool:
        """Whether the interval exists (two or more seeds on each side, some spread on one)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high) or self.low == np.inf)


def sd_ratio(a, b, level: float = LEVEL) -> Ratio:
    """sd(a) / sd(b) (sample stds) and its interval at `level` (two-sided) from the F distribution of the variance
    ratio with (n_a - 1, n_b - 1) degrees of freedom, which assumes normal per-seed values. With three seeds a side
    the interval spans a factor of about 6 each way of the estimate."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return Ratio(float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    if sa == sb == 0:
        return Ratio(float("nan"), float("nan"), float("nan"), int(a.size), int(b.size))
    estimate = float(sa / sb) if sb > 0 else float("inf")
    f = _scipy_stats.f(a.size - 1, b.size - 1)
    tail = (1 - level) / 2
    return Ratio(estimate, estimate / float(np.sqrt(f.ppf(1 - tail))), estimate / float(np.sqrt(f.ppf(tail))),
                 int(a.size), int(b.size))


def paired_difference(a: dict, b: dict, level: float = LEVEL) -> Difference:
    """mean over shared seeds of a[seed] - b[seed] with its paired t interval at `level` (n - 1 degrees of
    freedom), from per-seed values {seed: value}. Seeds pair runs of two configurations because a seed fixes the
    data order, the dropout masks and every initialisation outside the LRU (`train.run_keys`); seeds on one side
    only are left out. Fewer than two shared seeds: no interval."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    if d.size < 2:
        return Difference(float(d.mean()) if d.size else float("nan"), float("nan"), float("nan"), float("nan"),
                          int(d.size), int(d.size), True)
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return Difference(float(d.mean()), float(d.mean()) - half, float(d.mean()) + half, float(d.size - 1),
                      int(d.size), int(d.size), True)


def mean_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """The t interval (low, high) of the mean of per-seed values at `level`; (nan, nan) for fewer than 2."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return float(x.mean()) - half, float(x.mean()) + half


def authors_aggregate(values) -> tuple[float, float]:
    """The paper's statistic, as the authors' `scripts/analyse_results.py` computes it: the mean of the best
    three seeds (all of them if fewer) and the standard deviation over all seeds with ddof = 0 (numpy's default)."""
    x = np.asarray(values, dtype=float)
    return float(np.sort(x)[::-1][:3].mean()), float(x.std())


def seeds_to_decide(difference: Difference, threshold: float, sd: float, level: float = LEVEL,
                    power: float = 0.8) -> int | None:
    """An estimate of the seeds (pairs, or per side for Welch) at which an interval like `difference`'s would
    exclude `threshold` with probability `power`, if the true difference were the observed one and the per-seed
    spread `sd` (of the paired differences, or of each side for Welch): n = ((z_level + z_power) sd / |estimate -
    threshold|)^2 (normal approximation), doubled for two independent sides. None where it cannot be estimated
    (no spread, or the estimate is the threshold)."""
    gap = abs(difference.estimate - threshold)
    if not (np.isfinite(sd) and sd > 0 and gap > 0):
        return None
    z = _scipy_stats.norm.ppf(0.5 + level / 2) + _scipy_stats.norm.ppf(power)
    return int(np.ceil((1 if difference.paired else 2) * (z * sd / gap) ** 2))


def robust_sd(values) -> float:
    """1.4826 x the median absolute deviation: the sd of normal values, unmoved by one collapsed seed (the
    plain sd of 10 seeds grows with the collapse: no seed can lie more than 9 / sqrt(10) = 2.85 of them from the
    mean)."""
    x = np.asarray(values, dtype=float)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def collapsed(values, k: float = 3.0) -> np.ndarray:
    """Which per-seed values lie more than k robust sds (`robust_sd`) below the median: collapsed seeds."""
    x = np.asarray(values, dtype=float)
    sd = robust_sd(x)
    return x < np.median(x) - k * sd if sd > 0 else np.zeros(x.shape, bool)
