"""Every DVC stage depends on all the project code its command can run.

The import closure is read from the source with `ast`, not from a run: `calr-stage` imports
stages/cli.py, which imports every stage module (their module-level imports run); the command's
own module, and the stage modules it imports (the step commands `intra` and `round` call),
contribute every import, module-level or inside a function; a calr_core module contributes
every import it has, and importing a module runs its packages' __init__.py. A dep covers a file
when it is that file or a folder above it.
"""
import ast
from pathlib import Path

import pytest
import yaml

from calr_stages.cli import app

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"calr_core": "calr_core", "calr_stages": "stages"}  # import name -> folder


def module_file(name: str) -> Path | None:
    """The project file of module ``name``, or None for anything outside the project."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = ROOT / PACKAGES[top] / Path(*rest) if rest else ROOT / PACKAGES[top]
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(path: Path, *, module_level_only: bool) -> set[str]:
    """Project modules ``path`` imports (``from pkg import name`` counts pkg.name when it is a
    module), with every package above each of them."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))}
    return found


def closure(command: str) -> set[Path]:
    """Every project file `calr-stage <command>` can run."""
    (info,) = [c for c in app.registered_commands if c.name == command]
    own = info.callback.__module__
    todo, seen, full = ["calr_stages.cli", own], set(), {own}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        deep = not name.startswith("calr_stages.") or name in full
        found = imports(module_file(name), module_level_only=not deep)
        if name in full:  # a stage module the command runs: so are the step modules it imports
            full |= {n for n in found if n.startswith("calr_stages.")}
        todo += sorted(found)
    return {module_file(n).relative_to(ROOT) for n in seen}


def stage_commands() -> dict[str, list[str]]:
    """Each dvc.yaml stage's calr-stage sub-commands."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, st in stages.items():
        cmds = st["cmd"] if isinstance(st["cmd"], list) else [st["cmd"]]
        out[name] = [c.split()[1] for c in cmds if c.startswith("calr-stage ")]
    return out


def test_the_closure_reader_follows_function_level_imports_and_packages():
    files = {f.as_posix() for f in closure("round")}
    # train.py imports calr_core.train.loop inside its function; loop imports data.transforms
    assert {"stages/train.py", "calr_core/train/loop.py", "calr_core/data/transforms.py",
            "calr_core/__init__.py", "calr_core/data/__init__.py", "stages/_common.py"} <= files
    # search's function body is not run by `round`; its module is (cli imports it)
    assert "stages/search.py" in files and "calr_core/search.py" not in files


@pytest.mark.parametrize("stage", sorted(stage_commands()))
def test_dvc_stage_deps_cover_the_code_its_command_runs(stage):
    st = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    deps = [Path(d) for d in st.get("deps", [])]
    code = set().union(*(closure(c) for c in stage_commands()[stage]))
    assert code, f"{stage}: no calr-stage command found"
    missing = sorted(f.as_posix() for f in code if not any(f == d or d in f.parents for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs code its deps miss: {missing}"
