"""`calr-stage export`: a trained model as an ONNX file with a dynamic batch size."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import PARAMS_OPT, SET_OPT, echo, fail, setup, stage


@stage
def export(
    checkpoint: Path = typer.Option(..., help="A calr checkpoint, e.g. artifacts/phase2/round4/checkpoint.pt."),
    out: Path = typer.Option(..., help="The file to write, e.g. model.onnx."),
    format: str = typer.Option("onnx", "--format", help="onnx (the only format so far)."),
    height: Optional[int] = typer.Option(None, help="Input height (default: the checkpoint's, else params model.height)."),
    width: Optional[int] = typer.Option(None, help="Input width (default: the checkpoint's, else params model.width)."),
    opset: int = typer.Option(17, help="ONNX opset version."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Input `images` (B, 3, H, W): RGB, resized and normalised with the ImageNet mean/std as
    at test time; output `features` (B, D) with unit norm, what `extract` computes."""
    from calr_core.io import load_checkpoint
    from calr_core.model.onnx import export_onnx
    from calr_core.model.state import load_model

    p, _ = setup(params, set_, standalone=True)
    if format != "onnx":
        fail(f"--format {format!r}: expected onnx")
    state = load_checkpoint(checkpoint, required=("model_args",))
    trained = (state.get("resolved_params") or {}).get("model", {})
    h, w = height or trained.get("height", p.model.height), width or trained.get("width", p.model.width)
    export_onnx(load_model(state), out, height=h, width=w, opset=opset)
    echo(f"{out}: {state['model_args'].get('arch', 'model')} at {h} x {w}, dynamic batch, from {checkpoint}")
