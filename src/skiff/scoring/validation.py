"""Validate a batch of CSV rows against a model's feature schema, column at a time.

The rules are :class:`skiff.bracelet.features.Feature`'s, the model server's: a
cheap numpy mask finds the values that pass (null where nullable, finite, a
known code, whole where integer, within range); every value that does not is
handed to ``Feature.check`` itself for the reason, so a row is rejected here
exactly when the REST API would reject the same record, with the same words
(tests/unit/test_scoring_validation.py holds the two to agreement).

CSV cells are text: an empty cell is a missing value (null), any other cell must
parse as a number in the API's numeric encoding (sex 1/0, cp 1-4...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skiff.bracelet.features import Feature, FeatureSchema

# Spark's CSV reader puts a line that does not split into the header's fields here.
CORRUPT_COLUMN = "_corrupt_record"
MALFORMED = "malformed CSV line: its fields do not match the header"


@dataclass(frozen=True)
class Checked:
    """One batch: the model input (NaN where missing), which rows pass, and why the others do not."""

    matrix: np.ndarray
    valid: np.ndarray
    reasons: list[str | None]


def parse_cell(text: str | None) -> float | str | None:
    """A cell as ``Feature.check`` sees it: None if empty, a float if numeric, else the text."""
    if text is None or not text.strip():
        return None
    # float() reads "1_000"; pandas, which the mask uses, does not: neither do we.
    if "_" in text:
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _passes(feature: Feature, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """The values ``feature.check`` accepts, as a mask (numbers only; text never passes)."""
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        if feature.codes:
            fits = np.isin(values, sorted(set(feature.codes.values())))
        else:
            fits = (values >= feature.minimum) & (values <= feature.maximum)
            if feature.integer:
                fits &= values == np.trunc(values)
    ok = finite & fits
    return np.where(missing, feature.nullable, ok)


# What a column may come as: Arrow (Spark's batches) or pandas (a read_csv chunk).
Column: TypeAlias = "pa.Array | pa.ChunkedArray | pd.Series"


def _strings(values: Column) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, type=pa.string(), from_pandas=True)


def _numbers(cells: pa.Array, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, cells that are no number at all). NaN where missing or not a number."""
    try:
        # The usual case, a column of numbers: one vectorised parse.
        parsed = pc.cast(cells, pa.float64())
        return parsed.to_numpy(zero_copy_only=False), np.zeros(len(cells), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Some cell is text: parse value by value, text becoming NaN (and flagged).
    series = cells.to_pandas()
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    spelled_nan = series.str.lower().isin(NAN_SPELLINGS).to_numpy()
    return values, ~missing & np.isnan(values) & ~spelled_nan


def check_columns(schema: FeatureSchema, columns: dict[str, Column],
                  corrupt: Column | None = None) -> Checked:
    """Validate text columns (one per feature, equal lengths) of one batch."""
    n = len(next(iter(columns.values()))) if columns else 0
    matrix = np.empty((n, len(schema.features)), dtype=np.float64)
    valid = np.ones(n, dtype=bool)
    problems: dict[int, list[str]] = {}
    if corrupt is not None:
        bad = pc.is_valid(_strings(corrupt)).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(bad):
            problems.setdefault(int(i), []).append(MALFORMED)
        valid &= ~bad
    for j, feature in enumerate(schema.features):
        text = _strings(columns[feature.name])
        stripped = pc.utf8_trim_whitespace(text)
        is_missing = pc.fill_null(pc.equal(stripped, ""), True)
        missing = is_missing.to_numpy(zero_copy_only=False)
        cells = pc.if_else(is_missing, pa.scalar(None, pa.string()), stripped)
        numbers, unparsed = _numbers(cells, missing)
        passes = _passes(feature, numbers, missing) & ~unparsed
        matrix[:, j] = numbers
        for i in np.flatnonzero(~passes):
            # Feature.check itself says why: the REST API's words for the same value.
            why = feature.check(parse_cell(text[int(i)].as_py()))
            problems.setdefault(int(i), []).append(f"{feature.name}: {why}")
        valid &= passes
    reasons = [None if ok else "; ".join(problems[i]) for i, ok in enumerate(valid)]
    return Checked(matrix, valid, reasons)


# What float() reads as NaN: a number, but not a finite one (check() says so).
NAN_SPELLINGS = frozenset({"nan", "+nan", "-nan"})


def missing_columns(schema: FeatureSchema, header: Sequence[str]) -> list[str]:
    """Features the file's header lacks: the whole file is refused, before any row is read."""
    present = set(header)
    return [name for name in schema.names if name not in present]
