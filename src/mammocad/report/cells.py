"""How the report writes a value in a table cell: rounded, a dash where missing, intervals."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _r(value: Any, digits: int) -> Any:
    return None if value is None else round(float(value), digits)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return str(value)


def _num(value: Any) -> str:
    """A number as written in the paper: 60, not 60.0; 3.2 stays 3.2."""
    return "–" if value is None or pd.isna(value) else f"{float(value):g}"


def _interval(value: Any, low: Any, high: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value}"
    return f"{value} [{low}, {high}]"
