import numpy as np
from PIL import Image

from calr_core.eval.picture import BLUE, GREEN, RED, cell_origin, ranked_list_picture


def test_picture_frames_follow_truth(tmp_path):
    rng = np.random.default_rng(0)
    Q, G = 3, 15
    q_pids, g_pids = np.array([0, 1, 2]), rng.integers(0, 3, G)
    q_cams, g_cams = np.zeros(Q, int), rng.integers(0, 2, G)
    g_pids[:2], g_cams[:2] = 0, 1  # query 0 has true matches
    dist = rng.random((Q, G))
    paths = []
    for name, n in (("q", Q), ("g", G)):
        for i in range(n):
            p = tmp_path / "imgs" / f"{name}{i}.jpg"
            p.parent.mkdir(exist_ok=True)
            Image.new("RGB", (40, 90), (100 + 5 * i, 120, 140)).save(p, quality=90)
            paths.append(str(p.relative_to(tmp_path)))
    qpaths, gpaths = paths[:Q], paths[Q:]
    out = tmp_path / "pics" / "ranked.png"
    top_k, cell = 6, (64, 32)
    size = ranked_list_picture(qpaths, gpaths, dist, q_pids, g_pids, q_cams, g_cams, tmp_path, out,
                               n_queries=2, top_k=top_k, cell=cell)
    img = Image.open(out)
    assert img.format == "PNG" and img.size == size
    shown = [i for i in range(Q) if ((g_pids == q_pids[i]) & (g_cams != q_cams[i])).any()][:2]
    assert size[1] > len(shown) * cell[0] and size[0] > (1 + top_k) * cell[1]
    px = img.convert("RGB").load()
    seen = set()
    for row, qi in enumerate(shown):
        x, y = cell_origin(row, 0, cell)
        assert px[x + 1, y + 1] == BLUE
        order = np.argsort(dist[qi], kind="stable")
        order = order[~((g_pids[order] == q_pids[qi]) & (g_cams[order] == q_cams[qi]))]
        for rank, gi in enumerate(order[:top_k], start=1):
            x, y = cell_origin(row, rank, cell)
            want = GREEN if g_pids[gi] == q_pids[qi] else RED
            seen.add(want)
            assert px[x + 1, y + 1] == want and px[x + cell[1] - 2, y + cell[0] - 2] == want
    assert seen == {GREEN, RED}
    assert not list(out.parent.glob("*.tmp"))  # atomic write left no temp file
