"""Generated input: the live server never answers 5xx and never echoes a PII value; the
serving fast path (runtime/http_rows.py) agrees with the data contract and features.derive."""
from __future__ import annotations

import json
import math
from pathlib import Path

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
    from runtime.predictor import Predictor

    return Predictor(build("credit_risk"))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.array_equal(a, b, equal_nan=True)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(recs=st.lists(credit_records(), min_size=1, max_size=6))
def test_the_row_acceptor_agrees_with_the_contract(predictor, recs):
    from runtime.features import derive
    from runtime.http_rows import RowAcceptor, small_feed

    acc = RowAcceptor(predictor.contract)
    cols, errors = predictor.contract.validate_records(recs)
    fast = acc.accept(recs)
    if fast is not None:  # the fast path may only accept what the contract accepts, identically
        assert not errors.items
        assert list(fast) == list(cols) and all(_same(fast[k], cols[k]) for k in cols)
    if not errors.items:
        ref = derive(predictor.steps, cols)
        small = small_feed(predictor.steps, cols)
        assert list(small) == list(ref) and all(_same(small[k], ref[k]) for k in ref)


def test_the_row_acceptor_takes_plain_valid_records(predictor):
    from runtime.http_rows import RowAcceptor

    recs = records(200)[0]
    assert RowAcceptor(predictor.contract).accept(recs) is not None


def test_small_feed_matches_derive_on_every_transform(tmp_path: Path):
    """flight_delays has dates, buckets, logs, clips and nullable floats (its committed
    contract and features, read only: compiling it takes 20 s)."""
    from runtime.contract import Contract
    from runtime.features import FeatureStep, derive
    from runtime.http_rows import RowAcceptor, small_feed

    art = ROOT / "generated" / "flight_delays"
    contract = Contract.load(art / "contract.json")
    steps = [FeatureStep.from_dict(s) for s in json.loads((art / "features.json").read_text())["steps"]]
    steps.append(FeatureStep("ratio", "ratio", "distance", other="sched_dep_time"))
    recs = [{"flight_key": "2013-01-01-UA-1545", "flight_date": d, "sched_dep_time": t, "sched_arr_time": 819,
             "carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": dist, "temp": temp, "humid": None,
             "wind_speed": w, "precip": 0.0, "visib": 10.0}
            for d, t, dist, temp, w in [("2013-01-01", 0, 1400, 39.02, 80.0), ("01/31/2013", 2359, 1, None, None),
                                        ("31012013", 600, 17, -40.0, 0.0), ("2013-12-31", 1, 4999, 130.0, 1e-300)]]
    cols = RowAcceptor(contract).accept(recs)
    ref_cols, errors = contract.validate_records(recs)
    assert cols is not None and not errors.items
    ref = derive(steps, ref_cols)
    small = small_feed(steps, cols)
    assert all(_same(small[k], ref[k]) for k in ref)
    assert not math.isnan(float(small["day_of_week"][1, 0]))
