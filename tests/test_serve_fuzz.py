"""Generated input: the live server never answers 5xx and never echoes a PII value; the
serving fast path (runtime/serve/rows.py) agrees with the data contract and features.derive."""
from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._build import ROOT, build
from tests.test_serve import ADMIN, DATA_KEY, KEYS, PII, PII_VALUE, Server, records

# ---------------------------------------------------------------------- strategies
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", " ", "12", "3.5", "1e3", "nan", "inf", "true", "2024-01-01", "\u202e", "\ud800x"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _column_values(name: str, valid: list) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(valid), scalars, json_values) if valid else st.one_of(scalars, json_values)


@st.composite
def credit_records(draw) -> dict:
    """Mostly valid credit_risk records with a few fields broken, removed or added."""
    base = dict(draw(st.sampled_from(records(40)[0])))
    for col in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["replace", "replace", "delete"]))
        if action == "delete":
            base.pop(col)
        else:
            base[col] = draw(scalars if draw(st.booleans()) else json_values)
    if draw(st.booleans()):
        base[PII] = draw(st.sampled_from([PII_VALUE, [PII_VALUE], {"v": PII_VALUE}, 7, None]))
    if draw(st.integers(0, 9)) == 0:
        base[draw(st.text(max_size=10))] = draw(scalars)
    return base


def _credit_contract():
    """credit_risk's committed contract (read only: the strategies are built at import)."""
    from aiops.runtime.contract import Contract

    return Contract.load(ROOT / "generated" / "credit_risk" / "contract.json")


def _valid_value(rule, seen: list) -> st.SearchStrategy:
    """Values the contract accepts for this column, written in every accepted way."""
    if rule.dtype in ("int", "float"):
        lo = rule.ge if rule.ge is not None else (rule.gt + 1 if rule.gt is not None else -10**6)
        hi = rule.le if rule.le is not None else (rule.lt - 1 if rule.lt is not None else 10**6)
        ints = st.integers(int(lo), int(hi))
        return st.one_of(ints, ints, ints, ints.map(float), ints.map(str), ints.map(lambda v: f" {v}.0 "))
    if rule.isin is not None:
        return st.sampled_from([str(v) for v in rule.isin])
    text = st.text(min_size=1, max_size=20).filter(lambda t: t.strip() != "")
    return st.one_of(st.sampled_from(seen), st.sampled_from(seen), text) if seen else text


@st.composite
def valid_credit_records(draw) -> dict:
    """credit_risk records that the contract accepts, with values drawn from its rules (known
    and unseen categories, numbers as numbers, floats or text)."""
    contract = _credit_contract()
    seen = {}
    for r in records(40)[0]:
        for k, v in r.items():
            seen.setdefault(k, set()).add(v)
    rec = {}
    for rule in contract.request_columns:
        if rule.required or draw(st.booleans()):
            rec[rule.name] = draw(_valid_value(rule, sorted(map(str, seen.get(rule.name, ())))))
    return rec


bodies = st.one_of(
    json_values.map(lambda v: {"records": v}),
    json_values,
    st.lists(credit_records(), min_size=1, max_size=5).map(lambda rs: {"records": rs}),
    credit_records().map(lambda r: {"record": r}),
)


# ---------------------------------------------------------------------- the live server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"AIOPS_DATA_KEY": DATA_KEY, "AIOPS_API_KEYS": ",".join(f"{k}:{r}" for k, r in KEYS.items())}
    s = Server(build("credit_risk"), tmp_path_factory.mktemp("fuzz"), env).start()
    yield s
    s.stop()


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(body=bodies, route=st.sampled_from(["/v1/predict", "/v1/predict", "/v1/explain", "/v1/jobs"]))
def test_generated_bodies_never_get_a_5xx(server: Server, body, route: str):
    data = json.dumps(body, allow_nan=True)
    status, _, out = server.request("POST", route, data, {**ADMIN, "Content-Type": "application/json"})
    assert status < 500, (status, out[:300])
    assert status in (200, 202, 400, 413, 422), (status, out[:300])
    if status >= 400:
        err = json.loads(out)["error"]
        assert isinstance(err["message"], str)
        assert PII_VALUE.encode() not in out


@FUZZ
@given(raw=st.binary(max_size=300), ctype=st.sampled_from(["application/json", "application/json; charset=utf-8",
                                                          "text/csv", "", "application/x-www-form-urlencoded"]),
       method=st.sampled_from(["POST", "GET", "PUT"]),
       path=st.sampled_from(["/v1/predict", "/v1/explain", "/v1/jobs", "/v1/metadata", "/v1/jobs/" + "f" * 32,
                             "/metrics", "/x", "/v1/predict/", "//v1/predict"]))
def test_raw_bytes_never_get_a_5xx(server: Server, raw: bytes, ctype: str, method: str, path: str):
    headers = {**ADMIN, "Content-Type": ctype} if ctype else dict(ADMIN)
    status, _, out = server.request(method, path, raw, headers)
    assert status < 500, (status, out[:300])


# ---------------------------------------------------------------------- fast path == contract
@pytest.fixture(scope="module")
def predictor():
    from aiops.runtime.predictor import Predictor

    return Predictor(build("credit_risk"))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.array_equal(a, b, equal_nan=True)


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """_same, and -0.0 is not 0.0."""
    if a.dtype == object or b.dtype == object:
        return _same(a, b)
    return _same(a, b) and np.array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))


def _rows_feed(rows_path, recs: list) -> dict[str, np.ndarray] | None:
    """FeatureRows' feed of these records as derive gives it (n rows; a lone row comes back
    written twice: the first copy), or None when it passes them to the contract."""
    rows = rows_path.rows(recs)
    if rows is None:
        return None
    feed = rows_path.feed(rows)
    return {k: v[:len(recs)].copy() for k, v in feed.items()}


def _batch_outputs(predictor, recs: list) -> dict[str, np.ndarray]:
    """`aiops score`'s path for these records written as CSV text: the batch validator, its
    feed and the model."""
    import pyarrow as pa

    from aiops.runtime.score.scorer import _feed, _Validator

    # a CSV file has a column for every record or for none (an absent key is not an empty cell)
    names = [c.name for c in predictor.contract.request_columns if all(c.name in r for r in recs)]
    table = pa.table({n: pa.array([None if r[n] is None else str(r[n]) for r in recs], pa.string()) for n in names})
    clean, errors, distinct = _Validator(predictor.contract, names).validate(table)
    assert not errors.items, errors.items
    return predictor.run_feed(_feed(predictor.steps, clean, distinct, np.ones(len(recs), dtype=bool)))


def test_the_fast_paths_agree_with_the_contract_derive_batch_and_the_predictor(predictor):
    """Mostly valid requests (as the contract's rules generate them), so that most examples
    reach the comparison: the fast path's feed is derive's, bit for bit, and HTTP (fast path),
    the Predictor (contract path) and batch scoring give the same outputs, bit for bit."""
    from aiops.runtime.features import derive
    from aiops.runtime.serve.rows import FeatureRows, RowAcceptor

    acc = RowAcceptor(predictor.contract)
    feature_rows = FeatureRows(acc, predictor.steps, predictor.input_names)
    compared = []
    tried = []
    valid = st.lists(valid_credit_records(), min_size=1, max_size=6)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(recs=st.one_of(valid, valid, valid, valid, st.lists(credit_records(), min_size=1, max_size=6)))
    def run(recs):
        tried.append(1)
        cols, errors = predictor.contract.validate_records(recs)
        fast = acc.accept(recs)
        if fast is not None:  # the fast path may only accept what the contract accepts, identically
            assert not errors.items
            assert list(fast) == list(cols) and all(_same(fast[k], cols[k]) for k in cols)
        rows = _rows_feed(feature_rows, recs)
        if rows is not None:  # so may the feature rows, and their feed is derive's, bit for bit
            assert not errors.items
            ref = derive(predictor.steps, cols)
            assert sorted(rows) == sorted(ref) and all(_bits_equal(rows[k], ref[k]) for k in ref), recs
        if not errors.items:  # HTTP (the fast path's feed, or derive's when it defers), Predictor, batch
            http = predictor.run_feed(rows if rows is not None else derive(predictor.steps, cols))
            contract_path, errs = predictor.predict_records(recs)
            assert not errs.items
            optional = {c.name for c in predictor.contract.request_columns if not c.required}
            batch = _batch_outputs(predictor, recs) if all(
                all(n in r for r in recs) or not any(n in r for r in recs) for n in optional) else contract_path
            for k in http:
                assert _bits_equal(http[k], contract_path[k]) and _bits_equal(http[k], batch[k]), (k, recs)
            compared.append(len(recs))

    run()
    # 115 to 148 of 200, depending on Hypothesis's derandomized seed (which follows this test's source): the
    # guard is against a strategy that stops producing valid requests, not a count to hit exactly
    assert len(tried) == 200 and len(compared) >= 100, \
        f"only {len(compared)} of {len(tried)} examples reached the comparison"


def test_the_fast_paths_take_plain_valid_records(predictor):
    from aiops.runtime.serve.rows import FeatureRows, RowAcceptor

    recs = records(200)[0]
    acc = RowAcceptor(predictor.contract)
    assert acc.accept(recs) is not None
    assert FeatureRows(acc, predictor.steps, predictor.input_names).rows(recs) is not None


def _flight(d="2013-01-01", t=0, dist=1400, temp=39.02, w=80.0, humid=None, key=1545) -> dict:
    return {"flight_key": f"2013-01-01-UA-{key}", "flight_date": d, "sched_dep_time": t, "sched_arr_time": 819,
            "carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": dist, "temp": temp, "humid": humid,
            "wind_speed": w, "precip": 0.0, "visib": 10.0}


FLIGHT_EDGES = [_flight(d, t, dist, temp, w, key=1545 + i) for i, (d, t, dist, temp, w) in enumerate([
    ("2013-01-01", 0, 1400, 39.02, 80.0), ("01/31/2013", 2359, 1, None, None), ("31012013", 600, 17, -40.0, 0.0),
    ("2013-12-31", 1, 4999, 130.0, 1e-300), ("2012-02-29", 1200, 2, -0.0, -0.0), ("2016-12-31", 2359, 3, 0.0, 5e-324)])]
# flight_key is unique: every record of a request has its own


def _flight_steps():
    """flight_delays' steps (dates, buckets, logs, clips, nullable floats), plus a ratio, a
    difference and the two kinds of days_between, on its committed contract (read only:
    compiling it takes 20 s)."""
    from aiops.runtime.contract import Contract
    from aiops.runtime.features import FeatureStep

    art = ROOT / "generated" / "flight_delays"
    contract = Contract.load(art / "contract.json")
    steps = [FeatureStep.from_dict(s) for s in json.loads((art / "features.json").read_text())["steps"]]
    steps += [FeatureStep("ratio", "ratio", "distance", other="sched_dep_time"),
              FeatureStep("difference", "difference", "temp", other="humid"),
              FeatureStep("since_ref", "days_between", "flight_date", reference_days=15000),
              FeatureStep("since_other", "days_between", "flight_date", other="sched_dep_time"),
              FeatureStep("clip_low", "clip", "temp", clip_min=0.0),
              FeatureStep("year", "date_part", "flight_date", part="year"),
              FeatureStep("month", "date_part", "flight_date", part="month"),
              FeatureStep("quarter", "date_part", "flight_date", part="quarter"),
              FeatureStep("day", "date_part", "flight_date", part="day"),
              FeatureStep("day_of_year", "date_part", "flight_date", part="day_of_year"),
              FeatureStep("dep_category", "onehot", "sched_dep_time"),  # categories of numbers
              FeatureStep("temp_category", "ordinal", "temp"),
              FeatureStep("date_category", "onehot", "flight_date")]
    return contract, steps


def _check_rows_against_derive(contract, steps, recs) -> None:
    from aiops.runtime.features import derive
    from aiops.runtime.serve.rows import FeatureRows, RowAcceptor

    ref_cols, errors = contract.validate_records(recs)
    assert not errors.items
    ref = derive(steps, ref_cols)
    rows = FeatureRows(RowAcceptor(contract), steps, [s.name for s in steps])
    for batch in [recs] + [[r] for r in recs]:  # together, and one record at a time (the 2-copy buffers)
        got = _rows_feed(rows, batch)
        assert got is not None
        at = recs.index(batch[0]) if len(batch) == 1 else 0
        for k in ref:
            assert _bits_equal(got[k], ref[k][at:at + len(batch)]), (k, batch)


def test_feature_rows_match_derive_on_every_transform():
    contract, steps = _flight_steps()
    _check_rows_against_derive(contract, steps, FLIGHT_EDGES)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(vals=st.lists(st.tuples(
    st.dates(min_value=date(1950, 1, 1), max_value=date(2060, 12, 31)),
    st.integers(0, 2359), st.integers(1, 4999),
    st.one_of(st.none(), st.floats(-40, 130)), st.one_of(st.none(), st.floats(0, 80), st.sampled_from([-0.0, 0.0])),
    st.one_of(st.none(), st.floats(0, 100))), min_size=1, max_size=5))
def test_feature_rows_match_derive_on_generated_values(vals):
    contract, steps = _flight_steps()
    recs = [_flight(d.isoformat(), t, dist, temp, w, humid, key=1000 + i)
            for i, (d, t, dist, temp, w, humid) in enumerate(vals)]
    _check_rows_against_derive(contract, steps, recs)
