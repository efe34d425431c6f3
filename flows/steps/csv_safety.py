"""CSV injection defence for every CSV pmjobs writes (OWASP "CSV Injection").

Spreadsheets (Excel, LibreOffice, Google Sheets) run a cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return as a formula when a person opens the CSV. Event logs
carry uploader-controlled text (activity names, resources, any attribute), so every text cell
and column name we write that starts with one of those gets a leading single quote, which the
spreadsheet shows as plain text. A value that is only a number ("-5", "+3.2", "1e-3") cannot be
a formula and is left as it is, and numeric columns are never touched.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# ASCII digits only and matched in full (``re.fullmatch``): "-5\n=cmd" or "-٣" are not numbers.
_PLAIN_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_PLAIN_NUMBER_RE = re.compile(_PLAIN_NUMBER)


def escape_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if a spreadsheet would run it as a formula."""
    if (
        isinstance(value, str)
        and value.startswith(FORMULA_START)
        and not _PLAIN_NUMBER_RE.fullmatch(value)
    ):
        return "'" + value
    return value


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names cannot run as formulas."""
    out = df.copy()
    for position in range(out.shape[1]):
        values = out.iloc[:, position]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        if values.dtype == object:
            escaped = pd.Series(
                [escape_cell(v) for v in values.tolist()], index=values.index, dtype=object
            )
        elif pd.api.types.is_string_dtype(values.dtype):
            risky = values.str.startswith(FORMULA_START) & ~values.str.fullmatch(_PLAIN_NUMBER)
            risky = risky.fillna(False).astype(bool)
            if not risky.any():
                continue
            escaped = values.where(~risky, "'" + values)
        else:
            continue  # numbers, booleans, dates: written by pandas, never a formula
        out.isetitem(position, escaped)
    out.columns = [escape_cell(c) for c in out.columns]
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV bytes (no index), escaped with :func:`csv_safe`."""
    return csv_safe(df).to_csv(index=False).encode("utf-8")
