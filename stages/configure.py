"""`calr-stage configure`: write params.yaml from a preset (the paper's settings for a dataset)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from calr_stages._common import PARAMS_OPT, SET_OPT, echo, stage


def backup_name(path: Path) -> Path:
    """The first of PATH.bak, PATH.bak1, PATH.bak2, ... that does not exist yet."""
    n = 0
    while (candidate := path.with_name(path.name + (".bak" if n == 0 else f".bak{n}"))).exists():
        n += 1
    return candidate


@stage
def configure(
    preset: Optional[str] = typer.Option(None, help="market1501 | dukemtmc | msmt17 | veri776 | manifest | demo | demo-usl."),
    root: Optional[Path] = typer.Option(None, help="The dataset folder (for `manifest`: the CSV/Parquet "
                                        "file). Its training cameras become data.cameras."),
    rounds: Optional[int] = typer.Option(None, help="Phase-2 rounds to write (default: the preset's; paper 50)."),
    intra_rounds: Optional[int] = typer.Option(None, help="Phase-1 rounds per camera (default: the preset's; paper 20)."),
    list_: bool = typer.Option(False, "--list", help="Print what each preset sets, and exit."),
    params: Path = PARAMS_OPT,
    set_: Optional[List[str]] = SET_OPT,
) -> None:
    """Write params.yaml for a preset: the paper's settings for a dataset, with the cameras read
    from the data. An existing params.yaml is kept as params.yaml.bak (then .bak1, ...).
    Then `dvc repro` runs the whole schedule."""
    from calr_core import presets
    from calr_core.config import ParamsError, apply_overrides, load_params, parse_params
    from calr_core.data.datasets import read_dataset
    from calr_core.data.manifest import train_cameras
    from calr_core.io.atomic import atomic_write_text

    if list_:
        typer.echo(presets.describe())
        return
    if preset is None:
        raise ValueError("--preset: missing (one of " + ", ".join(presets.PRESETS) + "; --list says what each sets)")
    tree = presets.values(preset)  # refuses an unknown preset
    if preset in presets.DEMOS:
        if root is not None:
            raise ValueError(f"--root: the {preset} preset renders its own synthetic world into data/synth; "
                             "drop --root, or pick a dataset preset")
    else:
        if root is None:
            raise ValueError(f"--root: missing; the {preset} preset needs the dataset "
                             + ("CSV/Parquet file" if preset == "manifest" else "folder"))
        dataset = presets.PRESETS[preset]["data"]["dataset"]
        frame = read_dataset(dataset, root, check_images=False)
        cameras = train_cameras(frame)
        tree["data"].update(root=str(root), cameras=cameras)
        echo(f"{root}: {dataset} {frame.attrs.get('version', '')}, {int((frame.split == 'train').sum())} "
             f"training images from cameras {cameras}")
    for option, n in (("--rounds", rounds), ("--intra-rounds", intra_rounds)):
        if n is not None and n < 1:
            raise ValueError(f"{option} {n}: expected at least 1")
    if rounds is not None:
        tree["rounds"] = presets.chain(rounds)
    if intra_rounds is not None:
        tree["intra"]["rounds"] = presets.chain(intra_rounds)
    apply_overrides(tree, set_ or ())
    try:
        parse_params(tree)
    except ParamsError as exc:
        raise ValueError(f"--set: {str(exc).removeprefix('params: ')}") from None
    command = "calr-stage configure " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["configure"] else ""
    text = presets.render(preset, tree, command)
    params = Path(params)
    if params.is_file() and params.read_text() != text:
        kept = backup_name(params)
        kept.write_bytes(params.read_bytes())
        echo(f"{params}: the previous one kept as {kept}")
    atomic_write_text(params, text)
    p = load_params(params)
    echo(f"{params}: preset {preset}, {p.data.dataset} at {p.data.root}, cameras {p.data.cameras}, "
         f"{len(p.intra.rounds)} intra rounds, {len(p.rounds)} rounds; next: dvc repro")
