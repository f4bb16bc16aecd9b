"""Camera-aware P x K sampler: structure, camera preference, determinism, resume, rank split."""
import numpy as np
import pytest

from calr_core.data.sampler import CameraPKSampler


@pytest.fixture
def world():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 12, 30)  # some one-image ids, some larger than K
    labels = np.concatenate([np.full(s, k) for k, s in enumerate(sizes)] + [np.full(15, -1)])
    rng.shuffle(labels)
    camids = rng.integers(0, 4, labels.size)
    camids[labels == 3] = 2  # an id seen by one camera only
    return labels, camids


def test_pk_structure_no_outliers(world):
    labels, camids = world
    s = CameraPKSampler(labels, camids, num_instances=4, batch_size=16, iters=20, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 20
    for b in batches:
        assert len(b) == 16
        ids = labels[np.array(b)].reshape(4, 4)  # P x K
        assert (ids >= 0).all()
        assert (ids == ids[:, :1]).all()  # K instances of one id per group
        assert len(set(ids[:, 0])) == 4  # P distinct ids
    first_pass = np.concatenate([labels[np.array(b)][::4] for b in batches[:30 // 4]])
    assert len(set(first_pass)) == first_pass.size  # a pass visits each id at most once


def test_extra_picks_prefer_other_cameras(world):
    labels, camids = world
    s = CameraPKSampler(labels, camids, num_instances=4, batch_size=16, iters=50, seed=3)
    checked = 0
    for b in s:
        for group in np.array(b).reshape(4, 4):
            anchor, extra = group[0], group[1:]
            members = np.flatnonzero(labels == labels[anchor])
            other = [i for i in members if camids[i] != camids[anchor]]
            if other:
                assert all(camids[i] != camids[anchor] for i in extra)
                if len(other) >= 3:
                    assert len(set(extra)) == 3  # without replacement when enough
                checked += 1
            elif len(members) > 1:
                assert anchor not in extra  # same camera only: the id's other images
            else:
                assert (extra == anchor).all()  # a one-image id repeats its image
    assert checked > 50


def test_deterministic_resumable_and_epoch_dependent(world):
    labels, camids = world
    kw = dict(num_instances=4, batch_size=16, iters=12, seed=1)
    a = list(CameraPKSampler(labels, camids, epoch=2, **kw))
    assert a == list(CameraPKSampler(labels, camids, epoch=2, **kw))
    assert a != list(CameraPKSampler(labels, camids, epoch=3, **kw))
    assert a[5:] == list(CameraPKSampler(labels, camids, epoch=2, start_iter=5, **kw))


def test_rank_split_keeps_whole_identities(world):
    labels, camids = world
    kw = dict(num_instances=4, batch_size=16, iters=6, seed=1)
    full = list(CameraPKSampler(labels, camids, **kw))
    parts = [list(CameraPKSampler(labels, camids, rank=r, world_size=2, **kw)) for r in range(2)]
    for it, batch in enumerate(full):
        assert parts[0][it] + parts[1][it] == batch
        assert len(parts[0][it]) == 8
        assert not set(labels[parts[0][it]]) & set(labels[parts[1][it]])


def test_few_identities_and_bad_arguments(world):
    labels, camids = world
    small = np.array([0, 0, 1, 1, 1, -1])
    b = next(iter(CameraPKSampler(small, np.zeros(6), num_instances=2, batch_size=8, iters=1)))
    assert len(b) == 8 and -1 not in small[b]
    with pytest.raises(ValueError, match="batch_size"):
        CameraPKSampler(labels, camids, num_instances=4, batch_size=18)
    with pytest.raises(ValueError, match="world_size"):
        CameraPKSampler(labels, camids, num_instances=4, batch_size=12, world_size=2)
    with pytest.raises(ValueError, match="no cluster"):
        CameraPKSampler(np.full(5, -1), np.zeros(5), num_instances=2, batch_size=4)
