"""The variables of a prompt call, validated by the one contract core (runtime/contract.py):
prompt.json's `variables` is a contract dict, so a variable gets the same dtypes, checks,
nullability and reason codes as a column of a tabular model's request."""
from __future__ import annotations

import math
from typing import Any, Mapping

from aiops.runtime.contract import Contract


def validate(contract: Contract, variables: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(clean values, errors). Errors are `{"field", "code", "message"}` with the contract's
    reason codes; on any error the values are {}. Clean values: int, float and bool as
    Python numbers, text (str, category, date) as sent, a missing optional variable as None."""
    cols, errors = contract.validate_records([variables])
    if errors.items:
        return {}, [{"field": f or None, "code": c, "message": m} for _, f, c, m in errors.items]
    out: dict[str, Any] = {}
    given: Mapping[str, Any] = variables
    for c in contract.request_columns:
        v = cols[c.name][0]
        if c.dtype in ("int", "float", "bool"):
            v = float(v)
            if math.isnan(v):
                out[c.name] = None
            elif c.dtype == "int":
                out[c.name] = int(v)
            elif c.dtype == "bool":
                out[c.name] = bool(v)
            else:
                out[c.name] = v
        elif c.dtype == "date":
            out[c.name] = given.get(c.name) if v == v else None  # NaN days: null
        else:
            out[c.name] = v
    return out, []


def pii_variables(contract: Contract) -> list[str]:
    return [c.name for c in contract.columns if c.pii]


def text_variables(contract: Contract) -> list[str]:
    return [c.name for c in contract.columns if c.dtype in ("str", "category")]
