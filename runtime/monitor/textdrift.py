"""Text drift of prompt calls by a domain classifier, and the one text a logged call is seen as.

A classifier learns to tell the reference texts (the evaluation set's masked inputs and
outputs, recorded at compile in monitoring/reference.jsonl, or the first window) from the
current window's: TF-IDF of word 1-2 grams, then logistic regression. Its cross-validated
ROC AUC says how separable the two are: about 0.5 when the window reads like the reference,
towards 1 when it does not. Deterministic: fixed folds (stratified, shuffled with a fixed
seed), a fixed seed for the subsample of a large side, and a deterministic solver.

Masked values take no part: a PII variable's hash ("sha256:..."), "[redacted]" and the
placeholders of in-text masking are stripped first, so reference texts masked at compile
(redacted) and logged texts masked by the deployment's key (hashed) read alike.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

FOLDS = 5
SEED = 0
MAX_ROWS = 2000  # per side: a larger side is subsampled (fixed seed); the AUC does not need more
MIN_DF = 1
IMBALANCE = 4
MAX_FEATURES = 20_000
TOP_TERMS = 8  # the words that tell the window from the reference most, shown in the report...
MIN_TERM_DOCS = 5  # ...when at least this many texts hold them

# what masking leaves in a text (runtime/masking.py, runtime/genai/guardrails.SpanMasker): keyed hashes,
# redactions, and span placeholders such as "[email]" or "[phone sha256:...]", removed whole: a value
# masked by its column's method where the text repeats it ("echo") and a span masked by kind read alike
MASK_TOKENS = re.compile(r"\[(?:email|iban|card|phone)(?: sha256:[0-9a-f]{8,64})?\]|sha256:[0-9a-f]{8,64}"
                         r"|\[redacted\]|\[[A-Z_]{2,20}\]|<[A-Z_]{2,20}>")


def variables_text(variables: Any) -> str:
    """The text of a call's (masked) variables: each string value, in variable-name order,
    masked values stripped. Non-string values (categories, numbers) are included as text."""
    if not isinstance(variables, dict):
        return ""
    parts = []
    for k in sorted(variables):
        v = variables[k]
        if v is None or isinstance(v, (dict, list)):
            continue
        parts.append(str(v))
    return clean(" \n".join(parts))


def output_text(output: Any) -> str:
    """The text of a call's (masked) output: the text, or the JSON's string and scalar leaves."""
    if output is None:
        return ""
    if isinstance(output, str):
        if output.lstrip()[:1] not in ("{", "["):
            return clean(output)
        try:  # a JSON answer recorded as text (the evaluation evidence): its leaves, as for a parsed one
            output = json.loads(output)
        except ValueError:
            return clean(output)
    leaves: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k in sorted(v):
                walk(v[k])
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None:
            leaves.append(str(v))

    walk(output)
    return clean(" ".join(leaves))


def clean(text: str) -> str:
    return MASK_TOKENS.sub(" ", text).strip()


def domain_auc(reference: list[str], current: list[str], folds: int = FOLDS, seed: int = SEED,
               max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """{"auc", "reference_rows", "current_rows", "folds", "terms": {"current": [...], "reference": [...]}}
    or {"auc": None, "note": why} when the texts cannot be told apart by a classifier at all
    (too few texts, no words)."""
    rng = np.random.default_rng(seed)
    ref = [t for t in map(clean, reference) if t]
    cur = [t for t in map(clean, current) if t]
    # the larger side at most IMBALANCE times the smaller: the smaller side bounds what can be
    # learnt, and a lopsided split biases a cross-validated AUC below 0.5 on alike texts
    cap = min(max_rows, IMBALANCE * min(len(ref), len(cur)))
    ref, cur = _sample(ref, cap, rng), _sample(cur, cap, rng)
    k = min(folds, len(ref), len(cur))
    if k < 2:
        return {"auc": None, "reference_rows": len(ref), "current_rows": len(cur),
                "note": f"too few non-empty texts to cross-validate ({len(ref)} reference, {len(cur)} current)"}
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    texts = ref + cur
    y = np.r_[np.zeros(len(ref), dtype=int), np.ones(len(cur), dtype=int)]

    def model():
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=MIN_DF, max_features=MAX_FEATURES, sublinear_tf=True,
                            token_pattern=r"(?u)\b[^\W\d_][^\W_]+\b", dtype=np.float64),
            LogisticRegression(C=1.0, solver="liblinear", random_state=seed, max_iter=1000),
        )

    try:
        model().fit(texts, y)  # fails early on an empty vocabulary
    except ValueError:
        return {"auc": None, "reference_rows": len(ref), "current_rows": len(cur),
                "note": "no words to compare (every text is empty once masked values are removed)"}
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    proba = cross_val_predict(model(), texts, y, cv=cv, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(y, proba))
    full = model().fit(texts, y)
    vec, clf = full[0], full[1]
    names = vec.get_feature_names_out()
    docs = np.asarray((vec.transform(texts) > 0).sum(axis=0)).ravel()
    coef = np.where(docs >= MIN_TERM_DOCS, clf.coef_[0], 0.0)  # a rare term (a name, an id) is never shown
    order = np.argsort(coef, kind="stable")
    terms = {"current": [str(names[i]) for i in order[::-1][:TOP_TERMS] if coef[i] > 0],
             "reference": [str(names[i]) for i in order[:TOP_TERMS] if coef[i] < 0]}
    return {"auc": auc, "reference_rows": len(ref), "current_rows": len(cur), "folds": k, "terms": terms}


def _sample(texts: list[str], n: int, rng: np.random.Generator) -> list[str]:
    if len(texts) <= n:
        return texts
    idx = np.sort(rng.choice(len(texts), size=n, replace=False))
    return [texts[i] for i in idx]
