"""Numeric feature vectors: the columns that hold them, the matrix they make, the rows that break it, drift.

A vector source gives its features as numeric columns (a list of names, or a pattern such as `pixel*` for the
common MNIST CSV's `label,pixel0..pixel783`), as one list column of fixed length, or as a `.npy`/`.npz` array.
Whatever the form, the result is a float32 matrix of one row per example; the rows that cannot be used are
named by rule (`nonfinite`: a NaN or an infinity; `wrong_length`: a list of another length; `out_of_bounds`: a
value outside the bounds params declare) and go to quarantine with the first offending feature in the reason.
"""

from __future__ import annotations

import io
from fnmatch import fnmatchcase

import numpy as np

from bigmodel_core.errors import DataError


def feature_columns(
    available: list[str], wanted: list[str] | str, shown: str, exclude: tuple[str, ...] = ()
) -> list[str]:
    """The feature columns, in the file's order: `wanted` is a list of names (each must exist) or one glob
    pattern (`pixel*`; at least one column must match). Columns in `exclude` (the label) are never features."""
    if isinstance(wanted, str):
        found = [c for c in available if fnmatchcase(c, wanted) and c not in exclude]
        if not found:
            raise DataError(f"{shown}: no column matches the feature pattern {wanted!r} (columns: {_few(available)})")
        return found
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(f"{shown}: feature column(s) {_few(missing)} not found (columns: {_few(available)})")
    return list(wanted)


def _few(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


def matrix_from_columns(table, columns: list[str], shown: str) -> np.ndarray:
    """The float32 matrix of `columns` of a pyarrow table; a column that is not numeric is refused by name
    (with its first value that is not a number)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.empty((table.num_rows, len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            row = _first_not_number(col)
            raise DataError(
                f"{shown}: feature column {name!r} holds {col.type}, not numbers"
                + (f" (row {row + 1}: {col[row].as_py()!r})" if row is not None else "")
            )
        out[:, j] = pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy()
    return out


def _first_not_number(col) -> int | None:
    for i, value in enumerate(col.to_pylist()):
        try:
            float(value)
        except (TypeError, ValueError):
            return i
    return None


def matrix_from_lists(values: list, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a list column as a float32 matrix of `length` features, and the rows whose list has another
    length (their matrix rows are NaN)."""
    out = np.full((len(values), length), np.nan, dtype=np.float32)
    wrong = np.zeros(len(values), dtype=bool)
    for i, row in enumerate(values):
        if row is None or len(row) != length:
            wrong[i] = True
        else:
            out[i] = np.asarray(row, dtype=np.float32)
    return out, wrong


def load_array(data: bytes, shown: str, key: str | None = None) -> np.ndarray:
    """A 2-D numeric array from `.npy` bytes, or from one array of an `.npz` archive (`key`, or its only
    array). Object arrays (pickles) are refused: they can run code."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{shown}: not a numeric .npy/.npz array ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{shown}: cannot be read as .npy/.npz ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if key is None and len(names) != 1:
            raise DataError(
                f"{shown}: an .npz of {len(names)} arrays ({_few(names)}): say which one holds the features"
            )
        if key is not None and key not in names:
            raise DataError(f"{shown}: no array {key!r} in the .npz (it has {_few(names)})")
        loaded = loaded[key or names[0]]
    if loaded.ndim != 2 or not np.issubdtype(loaded.dtype, np.number):
        raise DataError(f"{shown}: features must be a 2-D numeric array, found shape {loaded.shape} of {loaded.dtype}")
    return loaded.astype(np.float32)


def row_problems(x: np.ndarray, low: float | None = None, high: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Per row: the rule it breaks ("" when none) and a reason naming its first offending feature. Checked in
    order: nonfinite, then out_of_bounds."""
    rules = np.full(len(x), "", dtype=object)
    reasons = [""] * len(x)
    bad = ~np.isfinite(x)
    for i in np.flatnonzero(bad.any(axis=1)):
        j = int(np.argmax(bad[i]))
        rules[i], reasons[i] = "nonfinite", f"feature {j} is {x[i, j]}"
    outside = np.zeros_like(bad)
    with np.errstate(invalid="ignore"):
        if low is not None:
            outside |= x < low
        if high is not None:
            outside |= x > high
    for i in np.flatnonzero(outside.any(axis=1) & (rules == "")):
        j = int(np.argmax(outside[i]))
        rules[i], reasons[i] = "out_of_bounds", f"feature {j} is {x[i, j]:g}, outside [{low}, {high}]"
    return rules, reasons


def constant_features(x: np.ndarray) -> list[int]:
    """The features that take one value in every row (NaNs ignored): they carry no information."""
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(x, axis=0) - np.nanmin(x, axis=0) if len(x) else np.zeros(x.shape[1])
    return [int(j) for j in np.flatnonzero(~(spread > 0))]


def population_stability(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> np.ndarray:
    """Per feature, the population stability index of `actual` against `expected`: bins at the quantiles of
    `expected` (fewer where values repeat), PSI = sum((a - e) * ln(a / e)) over the bins' shares, each share
    floored at 1e-4 so an empty bin stays finite. Under 0.1 is usually read as stable, over 0.25 as a shift."""
    floor = 1e-4
    out = np.zeros(expected.shape[1])
    for j in range(expected.shape[1]):
        e, a = expected[:, j], actual[:, j]
        e, a = e[np.isfinite(e)], a[np.isfinite(a)]
        if not len(e) or not len(a):
            continue
        edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
        e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / len(e)
        a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
        e_share, a_share = np.maximum(e_share, floor), np.maximum(a_share, floor)
        out[j] = float(np.sum((a_share - e_share) * np.log(a_share / e_share)))
    return out
