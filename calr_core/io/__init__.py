"""Artifact I/O: schemas, Parquet tables, features, checkpoints, JSON; all writes atomic."""
from calr_core.io.atomic import atomic_path, atomic_write_text
from calr_core.io.checkpoint import ArtifactError, load_checkpoint, save_checkpoint
from calr_core.io.tables import (
    read_features,
    read_metadata,
    read_table,
    write_features,
    write_table,
)

__all__ = ["ArtifactError", "atomic_path", "atomic_write_text", "load_checkpoint",
           "read_features", "read_metadata", "read_table", "save_checkpoint",
           "write_features", "write_table"]
