"""Remaining-time prediction for running cases (the AnalyticsModel job).

Every event of a completed case is one training example: "the case has just done activity A,
at this hour and weekday, after `elapsed` seconds and `event_index` events; how long until it
ends?". The train/test split is by case, because prefixes of one case are strongly correlated:
splitting events at random would let the model see the case it is tested on (leakage) and
report an MAE far better than it achieves on new cases. Every case in the log is taken as
complete (an event log has no marker for cases still running when it was extracted).
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
# Types outside skops' built-in safe list that this model contains, reviewed once:
# HistGradientBoostingRegressor's tree arrays, and the partial(check_array, dtype=float64)
# its internal preprocessor uses for the numeric columns. A trusted partial can only wrap
# functions that are trusted themselves, so none of these lets a file run foreign code.
SKOPS_TRUSTED_TYPES = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)
TEST_FRACTION = 0.2
MAX_ACTIVITIES = 250  # tree categories (< 255 bins); rarer activities share one category


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
            "weekday": ts.dt.day_of_week.to_numpy(),
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


def build_model(seed: int = 0) -> Any:
    """The untrained pipeline: activity codes + numbers -> gradient-boosted trees.

    * Absolute-error loss: the metric is MAE and remaining times are heavy-tailed, so the
      model should estimate the conditional median, not the mean.
    * The activity is a native categorical feature (ordinal codes that the trees split as
      categories): the same information as a one-hot encoding, but one split can group
      activities, and it trains several times faster on large logs. Activities unseen in
      training become "missing", which the trees route like the training data's gaps.
    * Interaction constraints: activity, elapsed time and event index interact freely; hour
      and weekday act only as additive effects. On real logs the clock features otherwise
      produced case-specific splits that did not carry over to held-out cases.
    * Small trees (8 leaves, >= 20 prefixes each), 100 rounds at rate 0.05, no early stopping
      (its validation split is by row, which would leak prefixes of the same case).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        max_categories=MAX_ACTIVITIES,
    )
    columns = ColumnTransformer(
        [
            ("activity", encoder, CATEGORICAL_FEATURES),
            ("numbers", "passthrough", NUMERIC_FEATURES),
        ]
    )
    regressor = HistGradientBoostingRegressor(
        loss="absolute_error",
        categorical_features=[0],
        interaction_cst=[{0, 1, 2}, {3}, {4}],  # activity x elapsed x index; hour; weekday
        max_iter=100,
        learning_rate=0.05,
        max_leaf_nodes=8,
        min_samples_leaf=20,
        early_stopping=False,
        random_state=seed,
    )
    return Pipeline([("features", columns), ("regressor", regressor)])


def train_remaining_time_model(df: pd.DataFrame, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Fit a remaining-time regressor on all event prefixes; return it and its metadata.

    The model (see :func:`build_model`) predicts from a DataFrame with the columns of
    :func:`prefix_features`. It is scored on the 20 % of cases it never saw. The baseline
    predicts the training median for every prefix (the best constant under MAE), so
    ``mae < baselineMae`` means the features help; on logs whose remaining time is dominated
    by rare long waits (e.g. Sepsis' returns to the ER months later) the margin is small.
    """
    import sklearn
    from threadpoolctl import threadpool_limits

    X, y, cases = prefix_features(df)
    train, test = split_cases(cases, seed)
    model = build_model(seed)
    # One OpenMP thread: on a worker whose cores are busy with other jobs, the boosting's
    # OpenMP threads spin-wait on each other (measured on 2 busy cores: BPIC 2012 14 s with
    # 2 threads, 1.7 s with 1; Sepsis 8 s vs 0.2 s). Single-threaded it is fast anyway.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(X[train], y[train])
        predicted = np.clip(model.predict(X[test]), 0, None)
    y_test = y[test].to_numpy()
    median = float(np.median(y[train]))
    meta = {
        "target": TARGET,
        "algorithm": "HistGradientBoostingRegressor (absolute-error loss, categorical activity)",
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


def load_skops(data: bytes) -> Any:
    """Load skops bytes, trusting only SKOPS_TRUSTED_TYPES beyond skops' safe defaults.

    A file that needs any other type (a different or tampered model) raises ValueError
    instead of being constructed.
    """
    import skops.io as sio

    unexpected = sorted(set(sio.get_untrusted_types(data=data)) - set(SKOPS_TRUSTED_TYPES))
    if unexpected:
        raise ValueError(
            "The skops file needs types this service does not trust: " + ", ".join(unexpected)
        )
    return sio.loads(data, trusted=list(SKOPS_TRUSTED_TYPES))
