"""The OpenAPI 3.1 document of the server; the record schema is derived from contract.json."""
from __future__ import annotations

from typing import Any

from aiops.runtime.contract import ColumnRule, Contract

_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "category": "string",
          "date": "string", "datetime": "string"}


def column_schema(c: ColumnRule) -> dict[str, Any]:
    s: dict[str, Any] = {"type": _TYPES.get(c.dtype, "string")}
    if c.dtype == "category":
        s["type"] = ["string", "integer"]  # categories written as numbers are accepted
    for key, name in (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum")):
        v = getattr(c, key)
        if v is not None and c.numeric:
            s[name] = int(v) if float(v).is_integer() and c.dtype == "int" else v
    if c.isin is not None and not c.pii:
        s["enum"] = list(c.isin)
    if c.regex:
        s["pattern"] = c.regex
    if c.min_length is not None:
        s["minLength"] = c.min_length
    if c.max_length is not None:
        s["maxLength"] = c.max_length
    if c.dtype in ("date", "datetime"):
        s["description"] = f"a {'date-time' if c.dtype == 'datetime' else 'date'} written as {' or '.join(c.formats)}"
    if c.nullable:
        s["type"] = (s["type"] if isinstance(s["type"], list) else [s["type"]]) + ["null"]
    if c.pii:
        s["description"] = (s.get("description", "") + " Personal data: masked in the prediction log, never "
                            "echoed in errors.").strip()
        s["x-pii"] = True
    return s


def record_schema(contract: Contract) -> dict[str, Any]:
    props = {c.name: column_schema(c) for c in contract.request_columns}
    if contract.target:
        props[contract.target] = {"description": "the target; accepted and ignored"}
    out = {"type": "object", "properties": props, "additionalProperties": False,
           "required": [c.name for c in contract.request_columns if c.required]}
    if contract.row_checks:  # data.row_checks: 422 with row_check:<name> when one is false (a null passes)
        out["description"] = "Row checks: " + "; ".join(f"{r['name']}: {r['check']}" for r in contract.row_checks)
    return out


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(name: str, version: str, contract: Contract, max_records: int, max_body: int,
             classification: bool) -> dict[str, Any]:
    out_schema = ({"type": "object", "properties": {
        "prediction_id": {"type": "string"}, "label": {"type": "string"},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}}}}
        if classification else
        {"type": "object", "properties": {"prediction_id": {"type": "string"}, "value": {"type": "number"}}})
    common = {"400": _err("malformed JSON"), "401": _err("no or unknown API key"),
              "403": _err("the key's role lacks the permission"), "413": _err(f"body over {max_body} bytes"),
              "415": _err("the body is not application/json"),
              "422": _err("records break the data contract: per record, per field errors")}
    sec = [{"apiKey": []}, {"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": f"aiops: {name}", "version": version,
                 "description": "Generated from the compiled artefacts; the record schema is the data contract."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Record": record_schema(contract),
                "PredictRequest": {"type": "object", "required": ["records"], "additionalProperties": False,
                                   "properties": {"records": {"type": "array", "minItems": 1, "maxItems": max_records,
                                                              "items": {"$ref": "#/components/schemas/Record"}}}},
                "ExplainRequest": {"type": "object", "required": ["record"], "additionalProperties": False,
                                   "properties": {"record": {"$ref": "#/components/schemas/Record"}}},
                "JobRequest": {"type": "object", "required": ["records"], "properties": {
                    "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
                    "format": {"enum": ["csv", "parquet"], "default": "csv"}}},
                "Prediction": out_schema,
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "records": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"},
                        "errors": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "code": {"type": "string"},
                            "message": {"type": "string"}}}}}}}}}}},
            },
        },
        "paths": {
            "/v1/predict": {"post": {
                "summary": f"score up to {max_records} records", "security": sec,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                "responses": {"200": {"description": "one prediction per record, in order", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "model": {"type": "object"},
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}}}}}},
                    **common}}},
            "/v1/explain": {"post": {
                "summary": "the prediction for one record and the features that drove it", "security": sec,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ExplainRequest"}}}},
                "responses": {"200": {"description": "prediction and contributions"}, **common}}},
            "/v1/jobs": {"post": {
                "summary": "queue an asynchronous scoring job (JSON records or a CSV body)", "security": sec,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "responses": {"202": {"description": "queued; poll the status URL"}, **common}}},
            "/v1/jobs/{job_id}": {"get": {
                "summary": "status, counts and result location of a job", "security": sec,
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the job"}, "404": _err("no such job")}}},
            "/v1/jobs/{job_id}/result": {"get": {
                "summary": "the result file of a finished job (decrypted)", "security": sec,
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "CSV or Parquet"}, "404": _err("no such job"),
                              "409": _err("the job has not finished")}}},
            "/v1/metadata": {"get": {"summary": "model, contract, policy and limits", "security": sec,
                                     "responses": {"200": {"description": "metadata"}}}},
            "/v1/audit/verify": {"get": {"summary": "verify the prediction log's MAC chain and checkpoints", "security": sec,
                                         "responses": {"200": {"description": "chain report"}}}},
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "readiness", "responses": {"200": {"description": "ready"},
                                                                       "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus exposition", "security": sec,
                                 "responses": {"200": {"description": "metrics"}}}},
        },
    }
