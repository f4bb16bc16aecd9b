"""Parquet artifacts: schema-checked, atomically written, read back as pandas or numpy."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from calr_core.io.atomic import atomic_path
from calr_core.io.checkpoint import ArtifactError
from calr_core.io.schemas import SCHEMAS

_META_KEY = b"calr"


def _check_columns(kind: str, names: list[str], where: str) -> None:
    expected = SCHEMAS[kind].names
    missing = [c for c in expected if c not in names]
    extra = [c for c in names if c not in expected]
    if missing or extra:
        raise ArtifactError(
            f"{where}: not a {kind} table: missing column(s) {missing}, unexpected {extra}; "
            f"expected {expected}")


def _to_table(kind: str, frame: pd.DataFrame, where: str) -> pa.Table:
    _check_columns(kind, list(frame.columns), where)
    arrays = []
    for field in SCHEMAS[kind]:
        col = frame[field.name]
        try:
            arrays.append(pa.array(col, type=field.type, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: column {field.name!r} is not {field.type}: {exc}") from None
        if arrays[-1].null_count:
            raise ArtifactError(f"{where}: column {field.name!r} has missing values")
    return pa.Table.from_arrays(arrays, schema=SCHEMAS[kind])


def _write(table: pa.Table, path: Path, metadata: Mapping[str, Any]) -> None:
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps(dict(metadata), sort_keys=True).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def write_table(kind: str, frame: pd.DataFrame, path: str | os.PathLike,
                metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``frame`` as the ``kind`` artifact (columns and types checked) to ``path``."""
    path = Path(path)
    _write(_to_table(kind, frame, str(path)), path, metadata or {})


def _open(kind: str, path: Path) -> pa.Table:
    if not path.is_file():
        raise ArtifactError(f"{path}: {kind} file not found", artifact=path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file ({exc})") from None
    pandas_index = [n for n in table.schema.names if n.startswith("__index_level_")]
    table = table.drop_columns(pandas_index)  # a user's sorted frame saved with its index
    _check_columns(kind, table.schema.names, str(path))
    columns = []
    for field in SCHEMAS[kind]:
        col = table.column(field.name)
        if field.name == "feature":
            if not (pa.types.is_fixed_size_list(col.type) and col.type.value_type == pa.float32()):
                raise ArtifactError(f"{path}: column 'feature' has type {col.type}, "
                                    f"expected a fixed-size list of float32")
        elif col.type != field.type:
            if not _same_family(col.type, field.type):
                raise ArtifactError(f"{path}: column {field.name!r} has type {col.type}, expected {field.type}")
            col = col.cast(field.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, names=SCHEMAS[kind].names)


def _same_family(got: pa.DataType, want: pa.DataType) -> bool:
    """Types a pandas user's own file may carry for a column (large_string, int64, ...)."""
    checks = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean,
              lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))
    return any(c(got) and c(want) for c in checks)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The calr metadata dict stored in a Parquet artifact's schema."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(_META_KEY, b"{}"))


def read_table(kind: str, path: str | os.PathLike) -> pd.DataFrame:
    """Read and check the ``kind`` artifact at ``path``; metadata lands in ``frame.attrs``."""
    path = Path(path)
    frame = _open(kind, path).to_pandas()
    frame.attrs.update(read_metadata(path))
    return frame


def write_features(path: str | os.PathLike, image_ids, camids, features: np.ndarray,
                   metadata: Mapping[str, Any] | None = None) -> None:
    """Write an (N, D) float32 feature matrix with its image ids and cameras."""
    path = Path(path)
    features = np.ascontiguousarray(features, dtype=np.float32)  # (N, D)
    if features.ndim != 2 or len(features) != len(image_ids) or len(camids) != len(image_ids):
        raise ArtifactError(f"{path}: features {features.shape} do not match "
                            f"{len(image_ids)} image ids / {len(camids)} cameras")
    if not np.isfinite(features).all():
        raise ArtifactError(f"{path}: features contain NaN or inf; refusing to write them")
    n, d = features.shape
    flat = pa.array(features.reshape(-1), type=pa.float32())
    table = pa.Table.from_arrays(
        [pa.array(list(image_ids), pa.string()), pa.array(np.asarray(camids), pa.int32()),
         pa.FixedSizeListArray.from_arrays(flat, d)],
        names=["image_id", "camid", "feature"])
    _write(table, path, {**(metadata or {}), "dim": d})


def read_features(path: str | os.PathLike) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (frame of image_id/camid with metadata in attrs, (N, D) float32 features).

    The feature column is one contiguous float32 buffer: it becomes the (writable) array with
    one copy at most, never a per-row Python loop.
    """
    path = Path(path)
    table = _open("features", path)
    col = table.column("feature").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise ArtifactError(f"{path}: column 'feature' must be a fixed-size list of float32")
    d = col.type.list_size
    feats = col.flatten().to_numpy(zero_copy_only=False).reshape(len(table), d)  # (N, D)
    if not feats.flags.writeable:  # Arrow's zero-copy view is read-only; torch wants writable
        feats = feats.copy()
    frame = table.select(["image_id", "camid"]).to_pandas()
    finite = np.isfinite(feats).all(1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ArtifactError(f"{path}: {int((~finite).sum())} feature row(s) hold NaN or inf (first: row {row}, "
                            f"image {frame.image_id[row]!r})", artifact=path, again=True)
    frame.attrs.update(read_metadata(path))
    return frame, feats
