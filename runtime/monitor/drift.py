"""Drift statistics computed from counts and sketches, never from raw reference rows.

The reference side is `evidence/profile.json`: per numeric column its decile bins with
counts and a 101-point quantile grid (with the exact reference CDF at each grid point);
per categorical column its category counts. The current side is the same bins filled
by streaming the current data (`runtime.monitor_stats`). Every test here takes those
counts, so it costs O(bins), whatever the number of rows.

| test | input | value | drifted when |
|---|---|---|---|
| psi | bin / category counts | population stability index | value > threshold |
| jensen_shannon | bin / category counts | JS distance, base 2, in [0, 1] | value > threshold |
| chi_square | bin / category counts | chi-square homogeneity, p-value | p (corrected) < threshold |
| ks | CDFs on the quantile grid | sup distance on the grid, p-value | p (corrected) < threshold |
| wasserstein | CDF integrals between grid points + exact tails | W1 / reference std | value > threshold |
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PSI_FLOOR = 1e-4  # share given to an empty bin, so that PSI stays finite (as Evidently does)
P_VALUE_TESTS = ("ks", "chi_square")
KS_TINY = 1e-10
KS_LARGE = 10_000


@dataclass(frozen=True)
class TestResult:
    test: str
    value: float  # the statistic (PSI, JS distance, KS D, chi-square, normalised W1)
    p_value: float | None  # ks and chi_square only


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts, dtype=np.float64)


def psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """Population stability index: sum((c - r) * ln(c / r)) over bins, empty bins floored."""
    r = np.maximum(_shares(np.asarray(ref, dtype=np.float64)), PSI_FLOOR)
    c = np.maximum(_shares(np.asarray(cur, dtype=np.float64)), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance (the square root of the divergence), base 2: 0 same, 1 disjoint."""
    p = _shares(np.asarray(ref, dtype=np.float64))
    q = _shares(np.asarray(cur, dtype=np.float64))
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max((kl_p + kl_q) / 2.0, 0.0)))


def chi_square(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two samples over the same bins: (statistic, p-value).
    Bins empty in both samples are left out; no continuity correction."""
    from scipy.stats import chi2

    table = np.vstack([np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, float(chi2.sf(stat, table.shape[1] - 1))


def ks(ref_cdf: np.ndarray, cur_cdf: np.ndarray, n_ref: int, n_cur: int) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov from both CDFs on the reference quantile grid:
    (D, asymptotic two-sided p-value, as scipy.stats.ks_2samp(method="asymp")).
    D is the supremum over the 101 grid points, so it never exceeds the exact D and is
    below it by at most the largest mass of one grid interval (about 0.01). For large
    samples (n*m/(n+m) >= 10,000) and when p < 1e-10 (far below any threshold), p comes
    from the limiting Kolmogorov distribution: scipy's finite-n formula takes ~0.1 s there
    and agrees within 1% (large samples) or a few % (tiny p)."""
    from scipy.stats import kstwo, kstwobign

    if n_ref == 0 or n_cur == 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.asarray(ref_cdf) - np.asarray(cur_cdf)))) if len(ref_cdf) else 0.0
    en = np.round(n_ref * n_cur / (n_ref + n_cur))
    p = float(kstwobign.sf(d * math.sqrt(en)))
    if p >= KS_TINY and en < KS_LARGE:
        p = float(kstwo.sf(d, en))
    return d, float(np.clip(p, 0.0, 1.0))


def wasserstein(grid: np.ndarray, ref_cdf: np.ndarray, cur_cdf: np.ndarray, below: float, above: float,
                ref_int: np.ndarray | None = None, cur_int: np.ndarray | None = None) -> float:
    """Earth mover's distance W1 = integral of |F_ref - F_cur| over the line.

    `grid` holds the distinct reference quantiles (its first point is the reference
    minimum, its last the maximum), `ref_cdf` / `cur_cdf` both CDFs there. Below the first
    point and above the last, `below` = mean((grid[0] - x)+) and `above` =
    mean((x - grid[-1])+) of the current values are exact. Between two grid points, with
    `ref_int` / `cur_int` (the integral of each CDF over the interval, known exactly from
    the interval's count and sum) the interval adds |ref_int - cur_int|: exact unless the
    CDFs cross inside it. Without them both CDFs are taken as linear in the interval.
    """
    g = np.asarray(grid, dtype=np.float64)
    total = below + above
    if len(g) < 2:
        return float(total)
    if ref_int is not None and cur_int is not None:
        return float(total + np.abs(np.asarray(ref_int) - np.asarray(cur_int)).sum())
    d = np.asarray(ref_cdf, dtype=np.float64) - np.asarray(cur_cdf, dtype=np.float64)
    w = np.diff(g)
    a, b = d[:-1], d[1:]
    same = a * b >= 0
    denom = np.abs(a) + np.abs(b)
    cross = np.where(denom > 0, (a * a + b * b) / (2.0 * np.where(denom > 0, denom, 1.0)), 0.0)
    area = np.where(same, (np.abs(a) + np.abs(b)) / 2.0, cross) * w
    return float(total + area.sum())


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (p_values[i], i))
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def bonferroni(p_values: list[float]) -> list[float]:
    m = len(p_values)
    return [min(1.0, p * m) for p in p_values]


def correct(p_values: list[float], method: str) -> list[float]:
    """Adjusted p-values for testing many features at once: 'holm', 'bonferroni' or 'none'."""
    if method == "holm":
        return holm(p_values)
    if method == "bonferroni":
        return bonferroni(p_values)
    if method == "none":
        return list(p_values)
    raise ValueError(f"drift_correction must be one of 'holm', 'bonferroni', 'none'. Got {method!r} instead.")


def drifted(test: str, value: float, p_adjusted: float | None, threshold: float) -> bool:
    """The rule, one place: p-value tests fire below their threshold, the others above."""
    if test in P_VALUE_TESTS:
        return p_adjusted is not None and p_adjusted < threshold
    return value > threshold
