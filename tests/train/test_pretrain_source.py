"""The labelled source of `pretrain`: a project reader, or a rendered world of its own seed."""
import pandas as pd
import pytest

from calr_core.train.pretrain import labelled_source
from tests.data.test_datasets import MARKET, make_folders


def test_a_reader_gives_the_labelled_training_rows(tmp_path):
    root = make_folders(tmp_path / "market", MARKET)
    with labelled_source("market1501", root) as (train, image_root):
        assert image_root == root and (train.split == "train").all() and (train.pid >= 0).all()
        assert all((root / p).is_file() for p in train.path)
    assert root.is_dir()  # a user's dataset is never removed


def test_a_manifest_without_identities_is_refused(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": ["a.jpg"], "camid": [0], "pid": [-1], "split": ["train"]}).to_csv(manifest, index=False)
    with pytest.raises(ValueError, match="no identity"):
        with labelled_source("manifest", manifest):
            pass
    with pytest.raises(ValueError, match="source.root: empty"):
        with labelled_source("market1501", ""):
            pass


def test_a_synthetic_source_is_rendered_then_removed(tmp_path):
    with labelled_source("synth", "", synth_size="tiny", synth_seed=3, workdir=tmp_path) as (train, root):
        assert root == tmp_path / "source-tiny-seed3" and len(train) > 0 and (train.pid > 0).all()
        assert all((root / p).is_file() for p in train.path)
    assert not root.exists()
