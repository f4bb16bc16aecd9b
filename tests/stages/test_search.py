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


def test_export_to_onnx_matches_torch_and_searches_the_same(tmp_path):
    """`export` writes an ONNX file with a dynamic batch whose features equal the torch model's
    (onnxruntime, CPU), and `search` ranks the same with it as with the checkpoint."""
    import onnxruntime as ort
    import torch

    from calr_core.model.extract import embed
    from calr_core.model.state import load_model
    rng = np.random.default_rng(1)
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(gallery / f"g{i}.jpg")
    ckpt = tmp_path / "init.pt"
    save_initial(ckpt, arch="resnet18", pooling="gem", weights="none", seed=2)
    params = tmp_path / "params.yaml"
    params.write_text("model: {height: 64, width: 32}\nextract: {device: cpu, cpu_mode: fp32}\n")  # as ONNX runs
    onnx = tmp_path / "model.onnx"
    res = runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(onnx),
                              "--params", str(params)])
    assert res.exit_code == 0, res.output
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch dimension
    model = load_model(ckpt).eval()
    for batch in (1, 3, 7):
        x = torch.randn(batch, 3, 64, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = embed(model, x).numpy()
        (got,) = session.run(["features"], {"images": x.numpy()})
        assert got.shape == (batch, 512) and np.abs(got - ref).max() <= 1e-4

    lists = []
    for model_file in (ckpt, onnx):
        res = runner.invoke(app, ["search", "--checkpoint", str(model_file), "--gallery", str(gallery),
                                  "--query", str(gallery / "g2.jpg"), "--params", str(params)])
        assert res.exit_code == 0, res.output
        lists.append([line.split() for line in res.output.splitlines() if line.startswith("  ")])
    assert [r[2] for r in lists[0]] == [r[2] for r in lists[1]]  # the same ranking
    np.testing.assert_allclose([float(r[1]) for r in lists[0]], [float(r[1]) for r in lists[1]], atol=1e-4)
    res = runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--format", "tflite", "--out",
                              str(tmp_path / "m.tflite"), "--params", str(params)])
    assert res.exit_code == 2 and "--format 'tflite': expected onnx" in res.output
