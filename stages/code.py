"""`calr-stage code`: the project files each `calr-stage` command runs, with their md5s.

dvc.yaml's stages depend on these lists (artifacts/code/<command>.txt), not on the files
themselves: an edit re-runs a stage only when it changes code that the stage's command runs, and
each stage's dvc.lock entry holds one code dep instead of about twenty (docs/pipeline.md "What a
change re-runs").

The import closure is read from the source with `ast`, not from a run. `calr-stage` imports
stages/cli.py, which imports every stage module, so their module-level imports run. The
command's own module, and the stage modules it imports (the step commands `intra` and `round`
call), contribute every import, module-level or inside a function. A calr_core module
contributes every import it has, and importing a module runs its packages' __init__.py. A
package that loads its modules on first use (PEP 562) contributes all of them.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import typer

from calr_stages._common import ARTIFACTS_OPT, PARAMS_OPT, echo, setup, stage

PACKAGES = {"calr_core": "calr_core", "calr_stages": "stages"}  # import name -> folder


def module_file(name: str, root: Path) -> Path | None:
    """The file under ``root`` of project module ``name``, or None for anything outside it."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = root / PACKAGES[top] / Path(*rest)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=None)
def _imported(source: str, module_level_only: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(module, names taken from it) of each absolute import in ``source``: parsed once a text."""
    tree = ast.parse(source)
    found = []
    for node in tree.body if module_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, tuple(a.name for a in node.names)))
    return tuple(found)


def imports(path: Path, root: Path, *, module_level_only: bool) -> set[str]:
    """Project modules ``path`` imports (``from pkg import name`` counts pkg.name when it is a
    module), with every package above each of them."""
    try:
        statements = _imported(path.read_text(), module_level_only)
    except SyntaxError as exc:
        raise ValueError(f"{path}, line {exc.lineno}: {exc.msg}; fix it and run again") from None
    names = set()
    for module, members in statements:
        names.add(module)
        names |= {f"{module}.{m}" for m in members if module_file(f"{module}.{m}", root)}
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if module_file(p, root)}
    return found | {m for name in found for m in lazy_modules(name, root)}


def lazy_modules(package: str, root: Path) -> set[str]:
    """Every module of ``package`` when its __init__.py loads them on first use (a module-level
    ``__getattr__``, PEP 562, as calr_core.eval does): a name taken from it may come from any."""
    init = module_file(package, root)
    if init is None or init.name != "__init__.py" or "__getattr__" not in _functions(init.read_text()):
        return set()
    return {f"{package}.{f.stem}" for f in init.parent.glob("*.py") if f.name != "__init__.py"}


@functools.lru_cache(maxsize=None)
def _functions(source: str) -> frozenset[str]:
    """Names of the module-level functions in ``source``."""
    return frozenset(n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))


def command_module(command: str) -> str:
    """The module that defines `calr-stage <command>`."""
    from calr_stages.cli import app
    for info in app.registered_commands:
        if info.name == command:
            return info.callback.__module__
    raise ValueError(f"no calr-stage command {command!r}")


def closure(command: str, root: Path) -> list[Path]:
    """Every project file `calr-stage <command>` can run, relative to ``root``, sorted."""
    own = command_module(command)
    todo, seen, full = ["calr_stages.cli", own], set(), {own}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        deep = not name.startswith("calr_stages.") or name in full
        found = imports(module_file(name, root), root, module_level_only=not deep)
        if name in full:  # a stage module the command runs: so are the step modules it imports
            full |= {n for n in found if n.startswith("calr_stages.")}
        todo += sorted(found)
    return sorted(module_file(n, root).relative_to(root) for n in seen)


def listing(files: list[Path], root: Path) -> str:
    """``files`` as `md5sum` writes them: `<md5>  <path>` per file (`md5sum -c` checks them)."""
    return "".join(f"{hashlib.md5((root / f).read_bytes()).hexdigest()}  {f.as_posix()}\n" for f in files)


@stage
def code(
    artifacts: Path = ARTIFACTS_OPT,
    root: Path = typer.Option(Path("."), help="Project folder whose calr_core/ and stages/ are read."),
    params: Path = PARAMS_OPT,
) -> None:
    """List the project files each calr-stage command runs, with their md5s, in
    artifacts/code/<command>.txt: the code deps of dvc.yaml's stages. Checks params.yaml too
    (when there is one), so that `dvc repro` stops at its first stage on a bad value."""
    from calr_stages.cli import app
    from calr_core.io import atomic_write_text

    _, layout = setup(params, None, artifacts, standalone=True)
    if not module_file("calr_stages.cli", root):
        raise ValueError(f"--root {root}: no stages/cli.py there; run from the project folder")
    closures = {info.name: closure(info.name, root) for info in app.registered_commands}
    for name, files in closures.items():
        atomic_write_text(layout.code_list(name), listing(files, root))
    for old in layout.code_dir.glob("*.txt"):  # a command that no longer exists
        if old.stem not in closures:
            old.unlink()
    files = set().union(*closures.values())
    echo(f"{layout.code_dir}: the code of {len(closures)} commands ({len(files)} files)")
