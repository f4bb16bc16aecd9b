"""`calr-stage search` on real JPEGs with a real (seeded) checkpoint."""
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from calr_core.model.state import save_initial
from calr_stages.cli import app

runner = CliRunner()


def test_search_ranks_a_folder_and_saves_the_picture(tmp_path):
    rng = np.random.default_rng(0)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(gallery / f"g{i}.jpg")
    query = gallery / "g3.jpg"  # the query is in the gallery: it must come first, at distance ~0
    ckpt = tmp_path / "init.pt"
    save_initial(ckpt, arch="resnet18", pooling="avg", weights="none", seed=1)
    params = tmp_path / "params.yaml"
    params.write_text("model: {height: 32, width: 16}\nextract: {device: cpu}\n")
    res = runner.invoke(app, ["search", "--checkpoint", str(ckpt), "--gallery", str(gallery),
                              "--query", str(query), "--top-k", "4", "--picture",
                              str(tmp_path / "s.png"), "--params", str(params)])
    assert res.exit_code == 0, res.output
    ranked = [line.split() for line in res.output.splitlines() if line.startswith("  ")]
    assert len(ranked) == 4 and ranked[0][2] == "g3.jpg" and float(ranked[0][1]) < 1e-4
    assert [float(r[1]) for r in ranked] == sorted(float(r[1]) for r in ranked)
    with Image.open(tmp_path / "s.png") as im:
        assert im.size[1] > 32 and im.size[0] > 5 * 16

    res = runner.invoke(app, ["search", "--checkpoint", str(ckpt), "--gallery", str(gallery),
                              "--query", str(tmp_path / "nope.jpg"), "--params", str(params)])
    assert res.exit_code == 2 and "nope.jpg: image not found" in res.output
