"""Dataset readers on small folders of real JPEGs written in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from calr_core.data.datasets import COLUMNS, DatasetError, read_dataset


def jpeg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(path, quality=90)


def make_folders(root: Path, names: dict[str, list[str]]) -> Path:
    for folder, files in names.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            jpeg(root / folder / f, i)
    return root


MARKET = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg",
                           "0007_c3s3_076944_01.jpg", "0007_c6s1_001001_02.jpg"],
    "query": ["0010_c1s1_000101_00.jpg", "0011_c5s2_000201_00.jpg"],
    "bounding_box_test": ["0010_c4s1_001100_01.jpg", "0011_c2s1_010101_02.jpg",
                          "0000_c1s1_000001_01.jpg", "0000_c3s1_000002_05.jpg",
                          "-1_c1s1_000003_01.jpg", "-1_c2s1_000004_01.jpg",
                          "-1_c6s1_000005_01.jpg"],
}


def test_market_counts_junk_and_distractors(tmp_path):
    root = make_folders(tmp_path, MARKET)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"clutter")  # ignored OS file
    df = read_dataset("market1501", root)
    assert list(df.columns) == COLUMNS
    assert df.groupby("split").size().to_dict() == {"train": 4, "query": 2, "gallery": 4}
    assert (df["pid"] == -1).sum() == 0  # junk dropped
    assert (df[df.split == "gallery"]["pid"] == 0).sum() == 2  # distractors kept
    assert df.attrs == {"dataset": "market1501", "version": "1"}
    assert df["camid"].dtype == np.int64 and df["pid"].dtype == np.int64
    row = df[df.path == "bounding_box_train/0007_c6s1_001001_02.jpg"].iloc[0]
    assert (row.camid, row.pid, row.split, row.image_id) == (5, 7, "train", row.path)
    # deterministic order: split order, then path
    assert list(df["split"].drop_duplicates()) == ["train", "query", "gallery"]
    for _, g in df.groupby("split"):
        assert list(g["path"]) == sorted(g["path"])


def test_duke_and_veri(tmp_path):
    duke = make_folders(tmp_path / "duke", {
        "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c8_f0000001.jpg"],
        "query": ["0005_c1_f0000002.jpg"], "bounding_box_test": ["0005_c7_f0000003.jpg"]})
    df = read_dataset("dukemtmc", duke)
    assert sorted(df["camid"]) == [0, 1, 6, 7] and set(df["pid"]) == {1, 5}
    veri = make_folders(tmp_path / "veri", {
        "image_train": ["0001_c001_00016450_0.jpg", "0001_c020_00016460_0.jpg"],
        "image_query": ["0002_c002_00030600_1.jpg"], "image_test": ["0002_c019_00030620_1.jpg"]})
    df = read_dataset("veri776", veri)
    assert df["camid"].tolist() == [0, 19, 1, 18]
    assert df["split"].tolist() == ["train", "train", "query", "gallery"]


def write_msmt(root: Path, train_dir: str, test_dir: str) -> None:
    lists = {
        "list_train.txt": (train_dir, ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                                       "0000/0000_001_15_0303morning_0016_0.jpg 0"]),
        "list_val.txt": (train_dir, ["0001/0001_000_07_0303noon_0015_0.jpg 1"]),
        "list_query.txt": (test_dir, ["0000/0000_000_02_0303afternoon_0001_0.jpg 0"]),
        "list_gallery.txt": (test_dir, ["0000/0000_001_03_0303afternoon_0002_0.jpg 0", ""]),
    }
    for list_name, (folder, lines) in lists.items():
        (root / list_name).parent.mkdir(parents=True, exist_ok=True)
        (root / list_name).write_text("\n".join(lines) + "\n")
        for i, ln in enumerate(x for x in lines if x):
            jpeg(root / folder / ln.split()[0], i)


@pytest.mark.parametrize("version,dirs", [("V1", ("train", "test")),
                                          ("V2", ("mask_train_v2", "mask_test_v2"))])
def test_msmt17_versions(tmp_path, version, dirs):
    write_msmt(tmp_path, *dirs)
    df = read_dataset("msmt17", tmp_path)
    assert df.attrs == {"dataset": "msmt17", "version": version}
    assert df.groupby("split").size().to_dict() == {"train": 3, "query": 1, "gallery": 1}
    train = df[df.split == "train"]
    assert sorted(train["camid"]) == [0, 6, 14]  # third underscore field, 0-based
    assert train["path"].str.startswith(dirs[0] + "/").all()


def test_msmt17_bad_line(tmp_path):
    write_msmt(tmp_path, "train", "test")
    (tmp_path / "list_val.txt").write_text("0001/0001_000_07_x.jpg\n")
    with pytest.raises(DatasetError, match=r"list_val.txt:1"):
        read_dataset("msmt17", tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest(tmp_path, fmt):
    for i, p in enumerate(["imgs/a.jpg", "imgs/b.png", "imgs/sub/c.jpg"]):
        jpeg(tmp_path / p, i)
    df = pd.DataFrame({"path": ["imgs/sub/c.jpg", "imgs/a.jpg", "imgs/b.png"], "camid": [1, 0, 2],
                       "split": ["query", "train", "train"]})
    file = tmp_path / f"m.{fmt}"
    df.to_csv(file, index=False) if fmt == "csv" else df.to_parquet(file)
    out = read_dataset("manifest", file)
    assert out["path"].tolist() == ["imgs/a.jpg", "imgs/b.png", "imgs/sub/c.jpg"]
    assert out["camid"].tolist() == [0, 2, 1] and (out["pid"] == -1).all()
    assert out["image_id"].tolist() == out["path"].tolist()
    df.drop(columns="camid").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DatasetError, match=r"bad.csv.*camid"):
        read_dataset("manifest", tmp_path / "bad.csv")
    df.assign(camid=[0, -1, 1]).to_csv(tmp_path / "neg.csv", index=False)
    with pytest.raises(DatasetError, match=r"neg.csv.*camid"):
        read_dataset("manifest", tmp_path / "neg.csv")


@pytest.mark.parametrize("path", ["../outside.jpg", "imgs/../../outside.jpg", "/etc/outside.jpg"])
def test_manifest_paths_stay_inside_its_folder(tmp_path, path):
    jpeg(tmp_path / "outside.jpg")
    jpeg(tmp_path / "data" / "imgs" / "a.jpg")
    pd.DataFrame({"path": ["imgs/a.jpg", path], "camid": [0, 1]}).to_csv(tmp_path / "data" / "m.csv", index=False)
    with pytest.raises(DatasetError, match=r"m.csv: path .* leaves the manifest's folder") as err:
        read_dataset("manifest", tmp_path / "data" / "m.csv")
    assert "\n" not in str(err.value)


def test_symlinks_in_a_dataset_are_followed(tmp_path):
    """A dataset linked into place (a folder or single files): allowed, and read through the link."""
    store = make_folders(tmp_path / "store", MARKET)
    (tmp_path / "Market").symlink_to(store, target_is_directory=True)
    assert len(read_dataset("market1501", tmp_path / "Market")) == 10
    jpeg(tmp_path / "elsewhere" / "x.jpg")
    (tmp_path / "m" / "imgs").mkdir(parents=True)
    (tmp_path / "m" / "imgs" / "x.jpg").symlink_to(tmp_path / "elsewhere" / "x.jpg")
    pd.DataFrame({"path": ["imgs/x.jpg"], "camid": [0]}).to_csv(tmp_path / "m" / "m.csv", index=False)
    assert read_dataset("manifest", tmp_path / "m" / "m.csv").path.tolist() == ["imgs/x.jpg"]


def test_bad_file_name(tmp_path):
    root = make_folders(tmp_path, MARKET)
    jpeg(root / "query" / "person_12.jpg")
    with pytest.raises(DatasetError, match=r"person_12.jpg.*does not parse"):
        read_dataset("market1501", root)


def test_camera_out_of_range(tmp_path):
    root = make_folders(tmp_path, MARKET)
    jpeg(root / "bounding_box_train" / "0002_c7s1_000451_03.jpg")
    with pytest.raises(DatasetError, match=r"0002_c7s1_000451_03.jpg: camera 7 .*1..6"):
        read_dataset("market1501", root)


def test_empty_and_missing_folder(tmp_path):
    root = make_folders(tmp_path, MARKET)
    for f in (root / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"query: empty folder"):
        read_dataset("market1501", root)
    (root / "query").rmdir()
    with pytest.raises(DatasetError, match=r"query: missing folder"):
        read_dataset("market1501", root)


def test_non_image_file_is_not_skipped(tmp_path):
    root = make_folders(tmp_path, MARKET)
    (root / "bounding_box_train" / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"notes.txt: not an image"):
        read_dataset("market1501", root)


def test_corrupt_jpeg(tmp_path):
    root = make_folders(tmp_path, MARKET)
    bad = root / "bounding_box_test" / "0011_c3s1_000007_01.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(DatasetError, match=r"0011_c3s1_000007_01.jpg: unreadable image"):
        read_dataset("market1501", root)
    assert len(read_dataset("market1501", root, check_images=False)) == 11  # opt-out works


def test_unknown_dataset(tmp_path):
    with pytest.raises(DatasetError, match="expected one of"):
        read_dataset("cuhk03", tmp_path)
