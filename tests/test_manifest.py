"""Manifest helpers: camera indices and alignment by image id."""
import numpy as np
import pytest

from calr_core.data.manifest import align, camera_index


def test_camera_index_counts_a_networks_own_ids_in_sorted_order():
    cameras = [7, 0, 6, 1]
    ids = np.array([6, 0, 7, 1, 1, 6])
    expected = [sorted(cameras).index(c) for c in ids]  # brute force: place in the sorted list
    np.testing.assert_array_equal(camera_index(ids, cameras, "m.parquet"), expected)
    with pytest.raises(ValueError, match=r"m.parquet: camera 3 is not in params data.cameras \[0, 1, 6, 7\]"):
        camera_index([0, 3], cameras, "m.parquet")
    with pytest.raises(ValueError, match="camera 9"):
        camera_index([9], cameras, "m.parquet")  # past the last camera


def test_align_finds_rows_by_id_whatever_the_order():
    ref = np.array(["a", "b", "c", "d"])
    ids = np.array(["d", "a", "c"])
    pos = align(ids, ref, "x")
    assert (ref[pos] == ids).all()
    with pytest.raises(ValueError, match="x: 1 image id"):
        align(["a", "zz"], ref, "x")
