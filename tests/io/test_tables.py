import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from calr_core.io import (
    ArtifactError,
    read_features,
    read_table,
    write_features,
    write_table,
)
from calr_core.io.atomic import atomic_dir, atomic_path


def _pseudo(n=4):
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "camid": [0, 1] * (n // 2),
                         "global_label": [0, 0, 1, -1][:n], "label": [0, -1, 1, -1][:n],
                         "is_pivot": [True, False, True, False][:n], "density": np.ones(n, "f4"),
                         "weight": np.zeros(n, "f4"), "refined": [False, True, False, False][:n]})


def test_table_round_trip_keeps_types_and_metadata(tmp_path):
    path = tmp_path / "pl.parquet"
    write_table("pseudo_labels", _pseudo(), path, {"round": 3})
    back = read_table("pseudo_labels", path)
    pd.testing.assert_frame_equal(back, _pseudo(), check_dtype=False)
    assert back.attrs["round"] == 3
    assert pq.read_schema(path).field("label").type == pa.int32()
    assert pd.read_parquet(path).columns.tolist() == _pseudo().columns.tolist()  # plain pandas works


def test_wrong_columns_are_refused_on_write_and_read(tmp_path):
    path = tmp_path / "pl.parquet"
    with pytest.raises(ArtifactError, match=r"missing column\(s\) \['refined'\]"):
        write_table("pseudo_labels", _pseudo().drop(columns="refined"), path)
    assert not path.exists() and not os.listdir(tmp_path)  # nothing half-written
    with pytest.raises(ArtifactError, match="'label' is not int32"):
        write_table("pseudo_labels", _pseudo().assign(label=["a", "b", "c", "d"]), path)
    _pseudo().to_parquet(path)  # a user's own pandas file: int64/large_string are fine
    assert read_table("pseudo_labels", path).label.tolist() == [0, -1, 1, -1]
    _pseudo().assign(label=["a", "b", "c", "d"]).to_parquet(path)
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ArtifactError, match="other.parquet: not a pseudo_labels table"):
        read_table("pseudo_labels", tmp_path / "other.parquet")
    with pytest.raises(ArtifactError, match="column 'label' has type large_string, expected int32"):
        read_table("pseudo_labels", path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="junk.parquet: not a readable Parquet"):
        read_table("pseudo_labels", tmp_path / "junk.parquet")


def test_features_load_as_one_contiguous_array(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((37, 16)).astype(np.float32)
    write_features(tmp_path / "f.parquet", [f"x{i}" for i in range(37)], np.arange(37) % 3, feats,
                   {"round": 2})
    frame, back = read_features(tmp_path / "f.parquet")
    assert back.dtype == np.float32 and back.shape == (37, 16) and back.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(back, feats)
    assert frame.image_id.tolist()[:2] == ["x0", "x1"] and frame.attrs == {"round": 2, "dim": 16}
    assert pa.types.is_fixed_size_list(pq.read_schema(tmp_path / "f.parquet").field("feature").type)
    with pytest.raises(ArtifactError, match="NaN"):
        write_features(tmp_path / "g.parquet", ["a"], [0], np.full((1, 4), np.nan, np.float32))
    assert not (tmp_path / "g.parquet").exists()


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_a_killed_writes_temp_file_goes_with_the_next_write(tmp_path):
    path = tmp_path / "a.parquet"
    stale = tmp_path / ".a.parquet.k1ll3d.tmp"  # what kill -9 during a write leaves
    other = tmp_path / ".b.parquet.k1ll3d.tmp"  # another artifact's: not ours to remove
    stale.write_bytes(b"half")
    other.write_bytes(b"half")
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.parquet.k1ll3d.tmp", "a.parquet"]


def test_a_killed_runs_temp_folders_go_with_the_next_run(tmp_path):
    out = tmp_path / "synth"
    stale = [tmp_path / ".synth.k1ll3d.tmp", tmp_path / "..synth.k1ll3d.tmp.tmp-123"]
    mine = tmp_path / ".synth-backup"  # a user's folder of a similar name stays
    for d in [*stale, mine]:
        (d / "sub").mkdir(parents=True)
    with atomic_dir(out, marker="synth") as tmp:
        (tmp / "x").write_text("new")
    assert (out / "x").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".synth-backup", "synth"]


def test_atomic_dir_never_replaces_a_users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not written by calr"):
        with atomic_dir(mine, marker="synth"):
            pass
    assert (mine / "photo.jpg").exists()
    out = tmp_path / "out"
    for text in ("one", "two"):  # a folder calr wrote is replaced whole
        with atomic_dir(out, marker="synth") as tmp:
            (tmp / "f.txt").write_text(text)
    assert (out / "f.txt").read_text() == "two" and sorted(os.listdir(tmp_path)) == ["mine", "out"]


def test_an_artifact_gets_the_mode_of_any_new_file_not_the_temp_files_0600(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        (tmp_path / "plain.json").write_text("{}")  # what open() makes under this umask
    finally:
        os.umask(old)
    mode = lambda p: (tmp_path / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("a.json") == mode("plain.json") == 0o640
