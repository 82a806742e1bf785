"""Each drift statistic and streaming metric against scipy / scikit-learn, on real columns:
the flights of January-March 2013 (the training period) as reference, later months as
current data. The monitor sees the reference only through its profile (sketches)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from aiops.runtime.monitor import drift as D
from aiops.runtime.monitor.stats import CategorySketch, NumericSketch, Performance, auc_from_hist
from aiops.runtime.profile import categorical_profile, numeric_profile

from tests._build import ROOT

DATA = ROOT / "specs" / "flight_delays" / "data" / "flights_2013.parquet"


@pytest.fixture(scope="module")
def flights():
    import pyarrow.parquet as pq

    t = pq.read_table(DATA).to_pandas()
    t["month"] = t["flight_date"].str[5:7].astype(int)
    return t


def col(df, name, months):
    x = df.loc[df["month"].isin(months), name].to_numpy(dtype=np.float64)
    return x[~np.isnan(x)]


def sketch(ref: np.ndarray, cur: np.ndarray, chunks: int = 3) -> NumericSketch:
    s = NumericSketch(numeric_profile(ref))
    for part in np.array_split(cur, chunks):  # streamed in chunks, as the monitor does
        s.add(part)
    return s


REF = [1, 2, 3]


@pytest.mark.parametrize("name,months", [("temp", [7]), ("humid", [12]), ("arr_delay", [6]), ("wind_speed", [2]),
                                         ("distance", [9])])
def test_ks_matches_scipy_on_real_columns(flights, name, months):
    ref, cur = col(flights, name, REF), col(flights, name, months)
    d, p = sketch(ref, cur).test("ks").value, sketch(ref, cur).test("ks").p_value
    exact = stats.ks_2samp(ref, cur, method="asymp")
    # D is the supremum over the 101-point grid: never above the exact D, at most ~0.01 below
    assert exact.statistic - 0.01 <= d <= exact.statistic + 1e-12
    # the p-value is scipy's own asymptotic formula applied to that D; below 1e-10 (far below any
    # threshold) the limiting distribution's, which differs only in the far tail
    mine = D.ks(np.array([0.0]), np.array([exact.statistic]), len(ref), len(cur))[1]
    if exact.pvalue >= 1e-9:
        assert mine == pytest.approx(exact.pvalue, rel=1e-9)
    else:
        assert mine < 1e-9
    assert (p < 0.01) == (exact.pvalue < 0.01)


@pytest.mark.parametrize("name,months", [("temp", [7]), ("temp", [2]), ("humid", [12]), ("arr_delay", [6]),
                                         ("arr_delay", [2]), ("wind_speed", [1]), ("precip", [6]), ("distance", [9])])
def test_wasserstein_matches_scipy_on_real_columns(flights, name, months):
    ref, cur = col(flights, name, REF), col(flights, name, months)
    got = sketch(ref, cur).test("wasserstein").value
    want = stats.wasserstein_distance(ref, cur) / ref.std()
    # exact interval integrals on both sides: off only where the CDFs cross inside one of 100 intervals
    assert got == pytest.approx(want, rel=0.05, abs=0.005)
    assert got <= want + 1e-9


def test_wasserstein_without_interval_means_is_the_linear_approximation(flights):
    ref, cur = col(flights, "temp", REF), col(flights, "temp", [7])
    prof = numeric_profile(ref)
    del prof["interval_means"]
    s = NumericSketch(prof)
    s.add(cur)
    assert s.test("wasserstein").value == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std(), rel=0.05)


@pytest.mark.parametrize("name,months", [("temp", [7]), ("temp", [2]), ("humid", [12]), ("arr_delay", [6])])
def test_psi_and_jensen_shannon_on_decile_bins(flights, name, months):
    ref, cur = col(flights, name, REF), col(flights, name, months)
    s = sketch(ref, cur)
    edges = np.unique(np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    bounds = np.r_[-np.inf, edges, np.inf]
    shares = [[np.mean((x > a) & (x <= b)) for a, b in zip(bounds[:-1], bounds[1:])] for x in (ref, cur)]
    r, c = np.array(shares[0]), np.array(shares[1])  # bins (a, b], as the profile cuts them
    r_, c_ = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    assert s.test("psi").value == pytest.approx(float(np.sum((c_ - r_) * np.log(c_ / r_))), rel=1e-3)
    assert s.test("jensen_shannon").value == pytest.approx(float(jensenshannon(r, c, base=2)), rel=1e-9)


def test_psi_of_identical_distributions_is_zero_and_grows_with_shift(flights):
    ref = col(flights, "temp", REF)
    assert sketch(ref, ref).test("psi").value == pytest.approx(0.0, abs=1e-12)
    assert sketch(ref, col(flights, "temp", [4])).test("psi").value < sketch(ref, col(flights, "temp", [7])).test(
        "psi").value


def test_chi_square_and_jensen_shannon_on_real_categories(flights):
    ref = flights.loc[flights["month"].isin(REF), "carrier"].to_numpy(dtype=object)
    cur = flights.loc[flights["month"] == 9, "carrier"].to_numpy(dtype=object)
    s = CategorySketch(categorical_profile(ref)["counts"])
    s.add(cur[:2000])
    s.add(cur[2000:])
    keys, r, c = s.aligned()
    stat, p = s.test("chi_square").value, s.test("chi_square").p_value
    table = np.vstack([r, c])
    table = table[:, table.sum(axis=0) > 0]
    want = stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(want.statistic, rel=1e-9)
    assert p == pytest.approx(want.pvalue, rel=1e-6, abs=1e-300)
    assert s.test("jensen_shannon").value == pytest.approx(float(jensenshannon(r, c, base=2)), rel=1e-9)


def test_categories_beyond_the_profile_pool_into_other_or_unseen():
    pooled = CategorySketch({"a": 5, "b": 3, "__other__": 2, "__missing__": 1})
    pooled.add(np.array(["a", "z", None, "b", "y"], dtype=object))
    keys, ref, cur = pooled.aligned()
    assert keys == ["__other__", "a", "b"] and cur.tolist() == [2, 1, 1] and pooled.nulls == 1
    exact = CategorySketch({"a": 5, "b": 3})
    exact.add(np.array(["a", "z"], dtype=object))
    keys, ref, cur = exact.aligned()
    assert keys == ["__unseen__", "a", "b"] and ref.tolist() == [0, 5, 3] and cur.tolist() == [1, 1, 0]


def test_holm_and_bonferroni():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running maximum
    assert D.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert D.bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert D.correct(p, "none") == p
    with pytest.raises(ValueError, match=re.escape("drift_correction must be one of 'holm', 'bonferroni', 'none'. "
                                                   "Got 'bh' instead.")):
        D.correct(p, "bh")


def test_drift_rule_fires_above_a_statistic_and_below_a_p_value():
    assert D.drifted("psi", 0.3, None, 0.25) and not D.drifted("psi", 0.25, None, 0.25)
    assert D.drifted("ks", 0.2, 0.001, 0.01) and not D.drifted("ks", 0.2, 0.02, 0.01)


def test_streaming_metrics_match_scikit_learn_on_real_scores(flights):
    from sklearn import metrics as M

    rng = np.random.default_rng(0)
    y = flights["arr_delayed"].astype(str).to_numpy(dtype=object)
    # a real, imperfect score: the share of delayed flights at the same departure hour and origin
    key = flights["origin"] + (flights["sched_dep_time"] // 100).astype(str)
    rate = flights.groupby(key)["arr_delayed"].transform("mean").to_numpy()
    score = np.clip(rate + rng.normal(0, 0.05, len(rate)), 0, 1)
    proba = np.column_stack([1 - score, score])
    label = np.where(score >= 0.5, "1", "0").astype(object)
    perf = Performance("binary_classification", ("0", "1"), "1")
    for part in np.array_split(np.arange(len(y)), 4):
        perf.add(y[part], {"label": label[part], "probabilities": proba[part]})
    yb = (y == "1").astype(int)
    assert perf.metric("roc_auc") == pytest.approx(M.roc_auc_score(yb, score), abs=2e-3)
    assert perf.metric("average_precision") == pytest.approx(M.average_precision_score(yb, score), abs=5e-3)
    assert perf.metric("brier") == pytest.approx(M.brier_score_loss(yb, score), rel=1e-9)
    assert perf.metric("log_loss") == pytest.approx(M.log_loss(yb, np.clip(score, 1e-15, 1 - 1e-15)), rel=1e-6)
    pred = (label == "1").astype(int)
    for name, fn in (("accuracy", M.accuracy_score), ("balanced_accuracy", M.balanced_accuracy_score),
                     ("precision", M.precision_score), ("recall", M.recall_score), ("f1", M.f1_score)):
        assert perf.metric(name) == pytest.approx(fn(yb, pred), rel=1e-9), name


def test_regression_metrics_match_scikit_learn(flights):
    from sklearn import metrics as M

    y = flights["arr_delay"].to_numpy(dtype=np.float64)
    pred = flights.groupby("carrier")["arr_delay"].transform("mean").to_numpy()
    perf = Performance("regression", (), None)
    perf.add(y[:20000], {"value": pred[:20000]})
    perf.add(y[20000:], {"value": pred[20000:]})
    assert perf.metric("mae") == pytest.approx(M.mean_absolute_error(y, pred), rel=1e-9)
    assert perf.metric("rmse") == pytest.approx(np.sqrt(M.mean_squared_error(y, pred)), rel=1e-9)
    assert perf.metric("r2") == pytest.approx(M.r2_score(y, pred), rel=1e-6)


def test_auc_from_histograms_counts_ties_as_half():
    assert auc_from_hist(np.array([1, 0]), np.array([0, 1])) == 1.0
    assert auc_from_hist(np.array([1, 0]), np.array([1, 0])) == 0.5
    assert auc_from_hist(np.array([0, 0]), np.array([1, 0])) is None
