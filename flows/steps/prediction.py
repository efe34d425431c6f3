"""Remaining-time prediction for running cases (the AnalyticsModel job).

Every event of a completed case is one training example: "the case has just done activity A,
at this hour and weekday, after `elapsed` seconds and `event_index` events; how long until it
ends?". The train/test split is by case, because prefixes of one case are strongly correlated:
splitting events at random would let the model see the case it is tested on (leakage) and
report an MAE far better than it achieves on new cases.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import pandas as pd

from flows.steps.eventlog import XES_ACTIVITY, XES_CASE, XES_TIMESTAMP, ordered

TARGET = "remaining time (seconds)"
NUMERIC_FEATURES = ["elapsed_seconds", "event_index", "hour", "weekday"]
CATEGORICAL_FEATURES = ["activity"]
FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES
TEST_FRACTION = 0.2
MAX_ACTIVITIES = 100  # one-hot columns; rarer activities share one "infrequent" column


def prefix_features(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features of every event prefix, its remaining time, and its case id.

    Columns: ``activity`` (the last activity so far), ``elapsed_seconds`` since the case's
    first event, ``event_index`` (0-based), ``hour`` and ``weekday`` (0 = Monday, UTC) of the
    last event. The remaining time is case end - event time, so the final event has 0.
    A serving API builds the same columns for a running case to call ``model.predict``.
    """
    events = ordered(df)
    ts = events[XES_TIMESTAMP]
    case = events[XES_CASE]
    by_case = ts.groupby(case, sort=False)
    features = pd.DataFrame(
        {
            "activity": events[XES_ACTIVITY].astype(str).to_numpy(),
            "elapsed_seconds": (ts - by_case.transform("min")).dt.total_seconds().to_numpy(),
            "event_index": case.groupby(case, sort=False).cumcount().to_numpy(),
            "hour": ts.dt.hour.to_numpy(),
            "weekday": ts.dt.weekday.to_numpy(),
        }
    )
    remaining = pd.Series((by_case.transform("max") - ts).dt.total_seconds().to_numpy())
    return features, remaining, pd.Series(case.to_numpy())


def split_cases(case_ids: pd.Series, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks over events: 80 % of the cases train, 20 % test.

    Cases are shuffled with a seeded generator after sorting, so the split depends only on
    the set of case ids and the seed (not on row order or hash randomisation).
    """
    unique = np.sort(pd.unique(case_ids.astype(str)))
    if len(unique) < 2:
        raise ValueError("Training a remaining-time model needs at least 2 cases.")
    rng = np.random.default_rng(seed)
    n_test = max(1, int(round(len(unique) * TEST_FRACTION)))
    test_cases = rng.permutation(unique)[:n_test]
    test = case_ids.astype(str).isin(test_cases).to_numpy()
    return ~test, test


def train_remaining_time_model(df: pd.DataFrame, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Fit a remaining-time regressor on all event prefixes; return it and its metadata.

    The model is a scikit-learn Pipeline (one-hot activity + numbers ->
    HistGradientBoostingRegressor with absolute-error loss, since the metric is MAE and
    remaining times are heavy-tailed). It predicts from a DataFrame with the columns of
    :func:`prefix_features`. The baseline predicts the training median for every prefix
    (the best constant under MAE), so "mae < baselineMae" means the features help.
    """
    import sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    X, y, cases = prefix_features(df)
    train, test = split_cases(cases, seed)
    model = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        (
                            "activity",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=MAX_ACTIVITIES,
                                sparse_output=False,
                            ),
                            CATEGORICAL_FEATURES,
                        ),
                        ("numbers", "passthrough", NUMERIC_FEATURES),
                    ]
                ),
            ),
            (
                "regressor",
                HistGradientBoostingRegressor(
                    loss="absolute_error",
                    max_iter=200,
                    learning_rate=0.1,
                    early_stopping=False,
                    random_state=seed,
                ),
            ),
        ]
    )
    model.fit(X[train], y[train])
    y_test = y[test].to_numpy()
    predicted = np.clip(model.predict(X[test]), 0, None)
    median = float(np.median(y[train]))
    meta = {
        "target": TARGET,
        "algorithm": "HistGradientBoostingRegressor (absolute-error loss) on one-hot activity",
        "features": list(FEATURES),
        "trainCases": int(cases[train].nunique()),
        "testCases": int(cases[test].nunique()),
        "trainEvents": int(train.sum()),
        "testEvents": int(test.sum()),
        "mae": float(np.mean(np.abs(predicted - y_test))),
        "baselineMae": float(np.mean(np.abs(median - y_test))),
        "seed": seed,
        "sklearnVersion": sklearn.__version__,
    }
    return model, meta


def model_to_bytes(model: Any) -> dict[str, bytes]:
    """The model as pickle and as skops bytes.

    skops is the format to hand out: loading it only rebuilds types the loader explicitly
    trusts (``skops.io.loads(data, trusted=[...])``). A pickle runs arbitrary code while it
    loads, so load only pkl files you trust (ones this service wrote itself); it is offered
    because every Python ML tool reads it.
    """
    import skops.io as sio

    buf = io.BytesIO()
    pickle.dump(model, buf, protocol=pickle.HIGHEST_PROTOCOL)
    return {"pkl": buf.getvalue(), "skops": sio.dumps(model)}
