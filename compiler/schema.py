"""The typed schema of a spec, as dataclasses.

`validate.structure` walks the composed config against these types and collects every
problem (unknown keys with "did you mean", missing keys, wrong types, invalid choices) in
one pass; OmegaConf's own structured-config merge stops at the first error, so it is not
used for checking. `REQUIRED` marks a key without a default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union


class _Required:
    def __repr__(self) -> str:  # pragma: no cover - debug aid
        return "REQUIRED"


REQUIRED: Any = _Required()

Task = Literal["binary_classification", "multiclass_classification", "regression"]
Dtype = Literal["int", "float", "str", "category", "bool", "date", "datetime"]
TransformName = Literal[
    "passthrough", "impute", "scale", "onehot", "ordinal", "log", "clip", "bucketize",
    "days_between", "date_part", "ratio", "difference", "drop",
]
Scaling = Literal["standard", "minmax", "robust"]
ImputeStrategy = Literal["mean", "median", "most_frequent", "constant"]
DatePart = Literal["month", "day_of_week", "day_of_year", "day", "year", "quarter", "hour", "minute"]
DriftTest = Literal["psi", "ks", "chi_square", "jensen_shannon", "wasserstein"]
Action = Literal["alert", "retrain", "block"]


# ---------------------------------------------------------------- problem & KPIs
@dataclass
class Problem:
    statement: str = REQUIRED
    task: Task = REQUIRED
    target: str = REQUIRED
    positive_class: Optional[Any] = None
    decision: str = REQUIRED
    business_outcome: str = REQUIRED


@dataclass
class KPIMeasure:
    """How `aiops monitor` measures a KPI from predictions and labels (runtime/monitor/kpi.py)."""

    statistic: Literal["share_flagged", "share_approved", "positive_rate_among_approved",
                       "positive_rate_among_flagged", "positive_rate", "mean_score"] = REQUIRED
    threshold: Optional[float] = None  # on the positive-class score; default: the decision threshold


@dataclass
class KPI:
    name: str = REQUIRED
    definition: str = REQUIRED
    baseline: float = REQUIRED
    target: float = REQUIRED
    direction: Literal["increase", "decrease"] = REQUIRED
    owner: str = REQUIRED
    unit: str = ""
    measure: Optional[KPIMeasure] = None


# ---------------------------------------------------------------- data contract
@dataclass
class StrLength:
    min: Optional[int] = None
    max: Optional[int] = None


@dataclass
class Checks:
    ge: Optional[float] = None
    le: Optional[float] = None
    gt: Optional[float] = None
    lt: Optional[float] = None
    isin: Optional[list[Any]] = None
    regex: Optional[str] = None
    str_length: Optional[StrLength] = None
    unique: bool = False


@dataclass
class Column:
    dtype: Dtype = REQUIRED
    nullable: bool = False
    checks: Checks = field(default_factory=Checks)
    formats: list[str] = field(default_factory=list)  # accepted input formats of a date column
    pii: bool = False
    sensitive: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # a coded column's value -> its group's readable name
    description: str = ""
    source_name: Optional[str] = None  # the column's name in the file's header, when it differs
    known_after_outcome: bool = False  # known only after the outcome: never a model input (leakage)


@dataclass
class Indicators:
    """A sensitive attribute spread over 0/1 columns: a row's group is the column set to 1."""

    columns: dict[str, str] = REQUIRED  # indicator column -> the group's readable name
    description: str = ""


@dataclass
class RowCheck:
    """A comparison between two columns of one row, or a column and a literal (docs/contract.md)."""

    name: str = REQUIRED
    check: str = REQUIRED  # "<column> <op> <column or literal>", op one of >= > <= < == !=


@dataclass
class Split:
    method: Literal["random", "stratified", "time"] = "stratified"
    test_size: float = 0.25
    seed: int = 0
    time_column: Optional[str] = None
    test_start: Optional[str] = None  # time split: rows on/after this date are the holdout
    end: Optional[str] = None  # time split: rows on/after this date are held back (for monitoring)


@dataclass
class Provenance:
    origin: str = REQUIRED
    license: str = REQUIRED
    derived_by: str = ""
    description: str = ""


@dataclass
class Data:
    source: str = REQUIRED
    format: Optional[Literal["csv", "parquet"]] = None
    key: Optional[str] = None  # a row key, used to join delayed labels
    provenance: Provenance = field(default_factory=Provenance)
    max_rejected_share: float = 0.0
    # sensitive attributes given as indicator columns (one-hot in the data), by attribute name
    indicators: dict[str, Indicators] = field(default_factory=dict)
    split: Split = field(default_factory=Split)
    columns: dict[str, Column] = REQUIRED
    row_checks: list[RowCheck] = field(default_factory=list)


# ---------------------------------------------------------------- features
@dataclass
class Feature:
    name: str = REQUIRED
    transform: TransformName = REQUIRED
    source: str = REQUIRED
    other: Optional[str] = None  # second column: ratio, difference, days_between
    reference: Optional[str] = None  # days_between: a fixed reference date (YYYY-MM-DD)
    part: Optional[DatePart] = None  # date_part
    impute: Optional[ImputeStrategy] = None
    fill_value: Optional[Any] = None
    scale: Optional[Scaling] = None
    categories: Optional[list[Any]] = None  # ordinal: ordered categories
    min: Optional[float] = None  # clip
    max: Optional[float] = None  # clip
    bins: Optional[Union[int, list[float]]] = None  # bucketize: count (quantile) or edges
    min_frequency: Optional[Union[int, float]] = None  # onehot: rarer categories (count, or share) go to "other"
    max_categories: Optional[int] = None  # onehot: at most this many columns, "other" included
    reason: str = ""  # drop: why the column is not used


# ---------------------------------------------------------------- model
@dataclass
class Model:
    estimator: str = REQUIRED
    params: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- thresholds
@dataclass
class Bound:
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class SliceBound:
    column: str = REQUIRED
    metric: str = REQUIRED
    min: Optional[float] = None
    max: Optional[float] = None
    min_rows: int = 30
    bins: Optional[list[float]] = None  # groups for a numeric column


@dataclass
class FairnessBound:
    attribute: str = REQUIRED
    metric: Literal[
        "demographic_parity_difference", "equal_opportunity_difference", "disparate_impact_ratio",
        "mean_prediction_difference", "mean_absolute_error_difference", "bounded_group_loss",
    ] = REQUIRED
    min: Optional[float] = None
    max: Optional[float] = None
    bins: Optional[list[float]] = None  # groups for a numeric attribute (e.g. age)
    positive_class: Optional[Any] = None  # multiclass: the class this bound is about (one-vs-rest)


@dataclass
class Parity:
    probabilities_atol: Optional[float] = None
    label_max_mismatch_rate: Optional[float] = None
    value_atol: Optional[float] = None  # regression
    edge_rows: int = 200


@dataclass
class Thresholds:
    evaluation: dict[str, Bound] = field(default_factory=dict)
    slices: list[SliceBound] = field(default_factory=list)
    fairness: list[FairnessBound] = field(default_factory=list)
    parity: Parity = field(default_factory=Parity)


# ---------------------------------------------------------------- monitoring
@dataclass
class DriftRule:
    test: DriftTest = REQUIRED
    threshold: float = REQUIRED  # statistic ceiling, or p-value floor for ks / chi_square
    applies_to: Literal["numeric", "categorical"] = REQUIRED


@dataclass
class DataQuality:
    max_schema_violation_rate: float = 0.01
    max_null_rate: float = 0.05
    max_out_of_range_rate: float = 0.01
    max_unseen_category_rate: float = 0.01


@dataclass
class Window:
    by: Literal["time", "rows"] = "rows"
    column: Optional[str] = None
    size: Union[int, str] = 5000  # rows, or 'day' / 'week' / 'month' for time windows


@dataclass
class MonitoringActions:
    data_quality: Action = "alert"
    drift: Action = "alert"
    performance: Action = "retrain"
    fairness: Action = "alert"


@dataclass
class Monitoring:
    schedule: str = REQUIRED  # cron
    window: Window = field(default_factory=Window)
    label_delay_days: int = 0
    label_key: Optional[str] = None
    min_rows: int = 100  # a window with fewer rows is "insufficient data": reported, not tested
    min_labelled_rows: int = 100  # performance needs this many labelled rows in a window
    data_quality: DataQuality = field(default_factory=DataQuality)
    drift: list[DriftRule] = field(default_factory=list)
    drift_features: dict[str, list[DriftRule]] = field(default_factory=dict)
    # drift is tested on the model inputs and the prediction; other contract columns only when listed here
    drift_columns: list[str] = field(default_factory=list)
    drift_correction: Literal["none", "bonferroni", "holm"] = "holm"
    prediction_drift: Optional[DriftRule] = None
    performance: dict[str, Bound] = field(default_factory=dict)
    fairness: bool = True
    actions: MonitoringActions = field(default_factory=MonitoringActions)
    retrain_margin: float = 0.0
    webhook: Optional[str] = None



# ---------------------------------------------------------------- monitoring of a prompt spec (kind: prompt)
@dataclass
class PromptWindow:
    by: Literal["time", "rows"] = "time"  # time: the calendar window of each logged call's ts
    size: Union[int, str] = "day"  # 'day' / 'week' / 'month', or a number of calls


@dataclass
class LengthDrift:
    test: Literal["psi", "wasserstein"] = "psi"  # on chars and tokens of inputs and outputs
    threshold: float = 0.25  # PSI, or W1 / reference std


@dataclass
class PromptMonitoringActions:
    drift: Action = "alert"  # text drift, length drift
    quality: Action = "alert"  # guardrail hits, refusals, JSON validity, errors
    feedback: Action = "alert"  # the feedback pass rate


@dataclass
class PromptMonitoring:
    """`monitoring:` of a prompt spec (docs/genai.md#monitoring-prompts); the compiler writes it
    into generated/<name>/monitoring/monitoring.json with the masked reference texts."""

    schedule: str = REQUIRED  # cron
    window: PromptWindow = field(default_factory=PromptWindow)
    min_rows: int = 30  # a window with fewer calls is "insufficient data": reported, not tested
    text_drift_auc: float = 0.75  # domain-classifier AUC (reference vs window) above which text drift alerts
    text_drift_on: list[Literal["input", "output"]] = field(default_factory=lambda: ["input", "output"])
    length_drift: LengthDrift = field(default_factory=LengthDrift)
    max_guardrail_hit_rate: float = 0.2  # per guard ("input.deny", "output.json_schema", ...)
    guardrail_hit_rates: dict[str, float] = field(default_factory=dict)  # per-guard ceilings overriding it
    max_refusal_rate: float = 0.1  # calls refused by a guardrail
    min_json_valid_rate: float = 0.9  # of the answered calls of a JSON prompt
    max_error_rate: float = 0.05  # timeouts, budget refusals, provider errors
    min_feedback_pass_rate: Optional[float] = None  # delayed feedback labels (--labels), per window
    min_feedback_rows: int = 20  # feedback labels a window needs before its pass rate is tested
    actions: PromptMonitoringActions = field(default_factory=PromptMonitoringActions)
    webhook: Optional[str] = None


# ---------------------------------------------------------------- serving
@dataclass
class Serving:
    modes: list[Literal["http", "batch", "async"]] = field(default_factory=lambda: ["http", "batch"])
    max_records_per_request: int = 1000
    max_body_bytes: int = 1_048_576
    latency_objective_ms: float = 50.0
    timeout_s: float = 10.0  # the longest a request is handled; then 504
    batch_chunk_rows: int = 50_000
    # connection limits (docs/serving.md#connection-limits), per worker process
    max_header_bytes: int = 32_768  # request line and headers; beyond: 431
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout_s: float = 30.0  # from the end of the headers to the end of the body
    keepalive_timeout_s: float = 5.0  # an idle connection (before or between requests) is closed
    max_connections: int = 1000  # open connections; beyond, the oldest idle or still-reading one is closed
    # asynchronous jobs
    job_max_attempts: int = 3  # a job whose worker died this many times is marked failed
    keep_job_inputs: bool = False  # keep a job's input file after the job completes


# ---------------------------------------------------------------- security
@dataclass
class Masking:
    method: Literal["hash", "redact", "generalize", "none"] = REQUIRED
    allow_as_feature: bool = False


@dataclass
class Encryption:
    enabled: bool = False
    key_env: str = "AIOPS_DATA_KEY"


@dataclass
class AuditLog:
    enabled: bool = False
    retention_days: int = 365


@dataclass
class Security:
    masking: dict[str, Masking] = field(default_factory=dict)
    encryption_at_rest: Encryption = field(default_factory=Encryption)
    roles: dict[str, list[Literal["predict", "explain", "score", "jobs", "jobs_admin", "metadata", "metrics", "audit",
                                  "admin", "generate"]]] = field(
        default_factory=dict
    )
    audit_log: AuditLog = field(default_factory=AuditLog)
    key_source: Literal["env", "file"] = "env"
    signing_key_env: str = "AIOPS_SIGNING_KEY"
    require_signature: bool = False  # always required for governance.risk_tier: high (compiler/sign.py)


# ---------------------------------------------------------------- governance
@dataclass
class Explainability:
    required: bool = False
    method: Literal["permutation_importance", "occlusion", "coefficients"] = "permutation_importance"


@dataclass
class Governance:
    owner: str = REQUIRED
    approvers: list[str] = field(default_factory=list)
    approvals_required: int = 1
    risk_tier: Literal["minimal", "limited", "high"] = REQUIRED
    intended_use: list[str] = REQUIRED
    out_of_scope_use: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    ethical_considerations: list[str] = field(default_factory=list)
    regulations: list[Literal["eu_ai_act", "nist_ai_rmf", "sr_11_7"]] = field(default_factory=list)
    explainability: Explainability = field(default_factory=Explainability)
    review_cadence_days: int = 180


# ---------------------------------------------------------------- environment
@dataclass
class Env:
    name: str = "local"
    registry: str = ".aiops/registry.db"
    quarantine_dir: str = ".aiops/quarantine"
    data_roots: list[str] = field(default_factory=list)  # folders data.source may point into, besides the spec's


# ---------------------------------------------------------------- identity
# `name` becomes a folder, a Python package suffix, an environment variable suffix and a
# crontab word: an identifier. `version` is a Semantic Version (https://semver.org).
NAME_GRAMMAR = r"[a-z][a-z0-9_]{0,63}"
VERSION_GRAMMAR = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                   r"(-(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?"
                   r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")


# ---------------------------------------------------------------- the spec
@dataclass
class Spec:
    kind: Literal["tabular", "prompt"] = "tabular"
    name: str = REQUIRED
    version: str = REQUIRED
    description: str = ""
    problem: Problem = field(default_factory=Problem)
    kpis: list[KPI] = field(default_factory=list)
    data: Data = field(default_factory=Data)
    features: list[Feature] = REQUIRED
    model: Model = field(default_factory=Model)
    thresholds: Thresholds = field(default_factory=Thresholds)
    monitoring: Monitoring = field(default_factory=Monitoring)
    serving: Serving = field(default_factory=Serving)
    security: Security = field(default_factory=Security)
    governance: Governance = field(default_factory=Governance)
    env: Env = field(default_factory=Env)


# ---------------------------------------------------------------- the prompt spec kind (docs/genai.md)
PROMPT_NAME_GRAMMAR = r"[a-z][a-z0-9_]{0,63}"
GUARD_TYPES = ("pii", "deny", "allow", "length", "json_schema")
ASSERTION_TYPES = ("equals", "contains", "regex", "json_schema", "json_field", "similar", "max_latency_ms",
                   "max_tokens", "rubric")


@dataclass
class PromptProblem:
    statement: str = REQUIRED
    decision: str = REQUIRED
    business_outcome: str = REQUIRED


@dataclass
class Budget:
    max_input_tokens: int = 1500
    max_output_tokens: int = 256
    max_tokens_per_minute: int = 60_000


@dataclass
class Provider:
    base_url_env: str = REQUIRED  # the NAME of an environment variable holding an OpenAI-compatible base URL
    api_key_env: Optional[str] = None  # the NAME of an environment variable holding a bearer token
    model: str = REQUIRED
    api: Literal["completions", "chat"] = "completions"
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 10.0
    retries: int = 1
    budget: Budget = field(default_factory=Budget)


@dataclass
class PromptOutput:
    format: Literal["text", "json"] = "text"
    prefill: Optional[str] = None
    schema: Optional[str] = None  # a JSON Schema file in the spec folder (format json)


@dataclass
class ToolDecl:
    schema: str = REQUIRED  # a JSON Schema file for the tool's arguments


@dataclass
class Tools:
    allow: dict[str, ToolDecl] = field(default_factory=dict)
    max_steps: int = 1


@dataclass
class Guard:
    type: str = REQUIRED  # one of GUARD_TYPES (checked with did-you-mean by rules_prompt)
    action: Optional[Literal["mask", "block"]] = None  # pii
    patterns: list[str] = field(default_factory=list)  # deny, allow
    max_chars: Optional[int] = None  # length


@dataclass
class Guardrails:
    input: list[Guard] = field(default_factory=list)
    output: list[Guard] = field(default_factory=list)


@dataclass
class Evaluation:
    golden: str = REQUIRED  # a JSONL file in the spec folder: {"id", "variables", "assert"} per line
    gates: dict[str, Bound] = field(default_factory=dict)  # pass_rate, json_valid_rate


@dataclass
class Prompt:
    description: str = ""
    template: str = REQUIRED  # a Jinja2 file in the spec folder, rendered in a SandboxedEnvironment
    variables: dict[str, Column] = REQUIRED
    output: PromptOutput = field(default_factory=PromptOutput)
    tools: Optional[Tools] = None
    guardrails: Guardrails = field(default_factory=Guardrails)
    evaluation: Evaluation = field(default_factory=Evaluation)


@dataclass
class PromptServing:
    max_concurrency: int = 8
    timeout_s: float = 30.0
    max_body_bytes: int = 65_536


@dataclass
class PromptSpec:
    kind: Literal["tabular", "prompt"] = "prompt"
    name: str = REQUIRED
    version: str = REQUIRED
    description: str = ""
    problem: PromptProblem = field(default_factory=PromptProblem)
    kpis: list[KPI] = field(default_factory=list)
    provider: Provider = field(default_factory=Provider)
    prompts: dict[str, Prompt] = REQUIRED
    monitoring: PromptMonitoring = field(default_factory=PromptMonitoring)  # docs/genai.md#monitoring-prompts
    serving: PromptServing = field(default_factory=PromptServing)
    security: Security = field(default_factory=Security)
    governance: Governance = field(default_factory=Governance)
    env: Env = field(default_factory=Env)
