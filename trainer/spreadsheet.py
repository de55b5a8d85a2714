"""CSV cells that a spreadsheet shows as text: user-controlled strings never run as formulas.

A file name, run name or label such as ``=HYPERLINK("http://...")`` written as-is into a CSV
becomes a live formula when the file is opened in Excel, LibreOffice or Google Sheets (CSV
injection). As OWASP recommends, a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return gets a leading single quote, which spreadsheets display as text and hide.
Numbers are left alone: ``-3.5`` in a numeric column is a number, not a formula.
"""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """`value` itself, or with a leading ' when it is text a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with safe_cell applied to every text cell (and the column names)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(safe_cell)
    out.columns = [safe_cell(c) if isinstance(c, str) else c for c in out.columns]
    return out
