import numpy as np
import pytest
import torch

from tests.train.world import make_world


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """~60 real 64x32 JPEGs (10 clusters x 5 + 10 outliers, 3 cameras) and world.npz."""
    root = tmp_path_factory.mktemp("train_world")
    make_world(root)
    return root


@pytest.fixture(scope="session")
def world(world_dir):
    w = np.load(world_dir / "world.npz")
    return {"root": world_dir, "paths": [str(p) for p in w["paths"]], "labels": w["labels"],
            "camids": w["camids"], "init_features": w["features"]}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: bitwise-reproducible CPU results and no spinning on the shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
