"""Dataset readers: Market-1501, DukeMTMC-reID, MSMT17 (V1/V2), VeRi-776 and manifest files.

Every reader returns the same table, the "manifest" of docs/pipeline.md "Artifacts":

    image_id  str    stable id of the image: its path relative to the root, POSIX separators
                     (a manifest file may bring its own ``image_id`` column instead). Labels of
                     later stages are matched to images through this id, never by absolute path,
                     so a dataset moved to another folder keeps its ids.
    path      str    path relative to the root (POSIX)
    camid     int64  camera, 0-based
    split     str    "train", "query" or "gallery"
    pid       int64  ground-truth identity, -1 = unknown (used by evaluation only)

Rows are sorted by split (train, query, gallery) then path: this is the "sorted training order"
that docs/method.md "Phase 2: inter-camera training", step 5 (pivot = highest-index member) depends on.
``df.attrs`` holds ``{"dataset": name, "version": ...}`` ("V1"/"V2" for MSMT17, else "1").
File-name conventions are those of docs/method.md "Datasets and file names".
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath
from typing import Literal

import pandas as pd
from PIL import Image

log = logging.getLogger(__name__)

DatasetName = Literal["market1501", "dukemtmc", "msmt17", "veri776", "manifest"]
SPLITS = ("train", "query", "gallery")
COLUMNS = ["image_id", "path", "camid", "split", "pid"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
IGNORED_FILES = {"thumbs.db", ".ds_store", "desktop.ini"}  # OS clutter found in real archives
_EXT = r"\.(?:jpe?g|png)$"


class DatasetError(ValueError):
    """A dataset file or folder is not what its layout promises (one line: file + expectation)."""


# name -> (split folders, file-name regex with groups (pid, camera), number of cameras, example)
_FOLDER_LAYOUTS = {
    "market1501": (("bounding_box_train", "query", "bounding_box_test"),
                   re.compile(r"^(-1|\d+)_c(\d+)s\d+_\d+_\d+" + _EXT, re.I), 6,
                   "0002_c1s1_000451_03.jpg"),
    "dukemtmc": (("bounding_box_train", "query", "bounding_box_test"),
                 re.compile(r"^(\d+)_c(\d+)_f\d+" + _EXT, re.I), 8, "0001_c2_f0046182.jpg"),
    "veri776": (("image_train", "image_query", "image_test"),
                re.compile(r"^(\d+)_c(\d+)_\S*" + _EXT, re.I), 20, "0001_c001_00016450_0.jpg"),
}
_MSMT_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_\S*" + _EXT, re.I)  # pid_index_camera_...


def read_dataset(name: DatasetName, root: str | os.PathLike, check_images: bool = True) -> pd.DataFrame:
    """Read a dataset into the manifest table described in this module's docstring.

    ``root`` is the dataset folder (for ``manifest``: the CSV/Parquet file itself). With
    ``check_images`` every image is opened with PIL (header parse + ``verify``), which catches
    empty, truncated-header and non-image files at load time rather than mid-training.
    """
    root = Path(root)
    if name in _FOLDER_LAYOUTS:
        rows, version = _read_folders(name, root), "1"
    elif name == "msmt17":
        rows, version = _read_msmt17(root)
    elif name == "manifest":
        return _read_manifest(root, check_images)
    else:
        raise DatasetError(f"dataset name {name!r}: expected one of market1501, dukemtmc, msmt17, "
                           "veri776, manifest")
    df = _finish(pd.DataFrame(rows, columns=["path", "camid", "split", "pid"]), name, version)
    if check_images:
        for rel in df["path"]:
            _check_image(root / rel)
    log.info("read %s (%s) from %s: %s", name, version, root,
             df["split"].value_counts().reindex(SPLITS).to_dict())
    return df


def _finish(df: pd.DataFrame, name: str, version: str) -> pd.DataFrame:
    """Add image_id, fix dtypes, sort in the deterministic training order, attach attrs."""
    if "image_id" not in df.columns:
        df.insert(0, "image_id", df["path"])
    dup = df["image_id"][df["image_id"].duplicated()]
    if len(dup):
        raise DatasetError(f"{name}: image {dup.iloc[0]!r} listed twice; expected unique images")
    df = df.astype({"image_id": str, "path": str, "camid": "int64", "split": str, "pid": "int64"})
    order = df["split"].map({s: i for i, s in enumerate(SPLITS)})
    df = df.assign(_o=order).sort_values(["_o", "path"], kind="stable").drop(columns="_o")
    df = df[COLUMNS].reset_index(drop=True)
    df.attrs = {"dataset": name, "version": version}
    return df


def _list_images(folder: Path) -> list[str]:
    """Sorted image file names of ``folder``; other files (bar OS clutter) are an error."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing folder; expected a folder of images")
    names = []
    for entry in os.scandir(folder):
        if entry.name.lower() in IGNORED_FILES or entry.name.startswith("."):
            continue
        if not entry.is_file() or Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{folder / entry.name}: not an image; expected only "
                               "*.jpg/*.jpeg/*.png files in this folder")
        names.append(entry.name)
    if not names:
        raise DatasetError(f"{folder}: empty folder; expected images")
    return sorted(names)


def _camera(path: Path, cam: int, n_cams: int) -> int:
    """1-based camera from a file name -> 0-based camid, range-checked."""
    if not 1 <= cam <= n_cams:
        raise DatasetError(f"{path}: camera {cam} out of range; expected 1..{n_cams}")
    return cam - 1


def _read_folders(name: str, root: Path) -> list[tuple]:
    """Market-1501 / DukeMTMC-reID / VeRi-776: one folder per split, labels in file names."""
    folders, pattern, n_cams, example = _FOLDER_LAYOUTS[name]
    rows = []
    for split, folder in zip(SPLITS, folders):
        for fname in _list_images(root / folder):
            m = pattern.match(fname)
            if m is None:
                raise DatasetError(f"{root / folder / fname}: file name does not parse; expected "
                                   f"a {name} name like {example}")
            pid = int(m.group(1))
            if pid == -1:  # Market-1501 junk: dropped at load (docs/method.md "Datasets and file names")
                continue
            cam = _camera(root / folder / fname, int(m.group(2)), n_cams)
            rows.append((f"{folder}/{fname}", cam, split, pid))
    return rows


def _read_msmt17(root: Path) -> tuple[list[tuple], str]:
    """MSMT17: list files name the images; V1 (train/, test/) or V2 (mask_*_v2/) by layout."""
    if (root / "mask_train_v2").is_dir():
        version, train_dir, test_dir = "V2", "mask_train_v2", "mask_test_v2"
    elif (root / "train").is_dir():
        version, train_dir, test_dir = "V1", "train", "test"
    else:
        raise DatasetError(f"{root}: not an MSMT17 folder; expected train/ (V1) or "
                           "mask_train_v2/ (V2) beside list_train.txt")
    lists = [("train", train_dir, "list_train.txt"), ("train", train_dir, "list_val.txt"),
             ("query", test_dir, "list_query.txt"), ("gallery", test_dir, "list_gallery.txt")]
    rows = []
    for split, folder, list_name in lists:
        list_file = root / list_name
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: missing list file; expected lines like "
                               "'0000/0000_000_01_0303morning_0015_0.jpg 7'")
        lines = [(i, ln.split()) for i, ln in enumerate(list_file.read_text().splitlines(), 1)]
        lines = [(i, parts) for i, parts in lines if parts]
        if not lines:
            raise DatasetError(f"{list_file}: empty list file; expected one image per line")
        for lineno, parts in lines:
            rel = parts[0]
            m = _MSMT_NAME.match(PurePosixPath(rel).name)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or m is None:
                raise DatasetError(f"{list_file}:{lineno}: {' '.join(parts)!r} does not parse; "
                                   "expected '0000/0000_000_01_0303morning_0015_0.jpg 7'")
            path = root / folder / rel
            if not path.is_file():
                raise DatasetError(f"{path}: missing image listed in {list_name}:{lineno}")
            rows.append((f"{folder}/{rel}", _camera(path, int(m.group(3)), 15), split,
                         int(parts[1])))
    return rows, version


def _read_manifest(file: Path, check_images: bool) -> pd.DataFrame:
    """A CSV/Parquet table with ``path, camid`` (0-based) and optional ``pid``, ``split``
    (default train) and ``image_id``; paths are inside the manifest's folder (no absolute path,
    no ``..``); a symbolic link in it is followed (a dataset linked into place)."""
    suffix = file.suffix.lower()
    if not file.is_file():
        raise DatasetError(f"{file}: missing manifest file; expected a .csv or .parquet file")
    if suffix == ".csv":
        df = pd.read_csv(file, dtype={"path": str, "split": str, "image_id": str})
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(file)
    else:
        raise DatasetError(f"{file}: unknown manifest format {suffix!r}; expected .csv or .parquet")
    missing = [c for c in ("path", "camid") if c not in df.columns]
    if missing:
        raise DatasetError(f"{file}: missing column(s) {missing}; expected columns path, camid "
                           "and optionally pid, split, image_id")
    df = df.copy()
    df["split"] = df["split"] if "split" in df.columns else "train"
    df["pid"] = df["pid"] if "pid" in df.columns else -1
    for col, lo in (("camid", 0), ("pid", -1)):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | (values < lo) | (values != values.round())
        if bad.any():
            raise DatasetError(f"{file}: column {col} has {df[col][bad].iloc[0]!r}; expected "
                               f"integers >= {lo}")
        df[col] = values.astype("int64")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        raise DatasetError(f"{file}: split {df['split'][bad].iloc[0]!r}; expected one of {SPLITS}")
    if df["path"].isna().any():
        raise DatasetError(f"{file}: empty path; expected a path relative to {file.parent}")
    df["path"] = [PurePosixPath(Path(p).as_posix()).as_posix() for p in df["path"]]
    base = file.parent
    for rel in df["path"]:
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise DatasetError(f"{file}: path {rel!r} leaves the manifest's folder; expected a path "
                               f"inside {base} (move the manifest up, or link the images in)")
        if not (base / rel).is_file():
            raise DatasetError(f"{base / rel}: missing image listed in {file.name}")
        if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"{base / rel}: not an image; expected *.jpg/*.jpeg/*.png")
    cols = [c for c in COLUMNS if c in df.columns]
    df = _finish(df[cols], "manifest", "1")
    if check_images:
        for rel in df["path"]:
            _check_image(base / rel)
    df.attrs["root"] = str(base)  # the folder the paths are relative to
    return df


def _check_image(path: Path) -> None:
    """Decode an image with PIL: a truncated JPEG passes a header check, not a decode (a
    128 x 64 crop decodes in well under a millisecond)."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # PIL raises many types for bad files; report them as one
        raise DatasetError(f"{path}: unreadable image ({type(e).__name__}: {e}); expected a "
                           "valid JPEG/PNG") from None
