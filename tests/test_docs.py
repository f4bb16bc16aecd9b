"""The project's own documentation holds together (fast: reads text files only).

- Every markdown file cited, ``<path>.md`` optionally followed by a space and a double-quoted
  heading, in the code (calr_core/, stages/, benchmarks/, tests/), dvc.yaml, params.yaml,
  Makefile, pyproject.toml, README.md, CHANGELOG.md and docs/*.md exists and, when a heading is
  quoted, has a markdown heading (any level) with exactly that text. A path resolves from the
  repository's root; a bare name from the citing file's folder, the root or docs/ (the CHANGELOG
  lists docs pages by name). Web addresses are not citations.
- The retired specification file is named nowhere but in CHANGELOG.md.
- Every relative markdown link of README.md and docs/*.md points at a file that exists, and an
  ``#anchor`` at a heading whose GitHub-style slug it is.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("calr_core", "stages", "benchmarks", "tests")
TOP_FILES = ("dvc.yaml", "params.yaml", "Makefile", "pyproject.toml", "README.md", "CHANGELOG.md")
RETIRED = "METHOD" + ".md"  # spelled in two parts so this file does not name it

CITATION = re.compile(r'(?<![\w./:-])((?:[\w.-]+/)*[\w.-]*\w\.md)\b(?: "([^"\n]+)")?')
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def scanned_files() -> list[Path]:
    """The files whose citations are checked: .py under the code folders, the top-level files
    that exist, and docs/*.md."""
    files = [p for d in CODE_DIRS for p in sorted((ROOT / d).rglob("*.py")) if "__pycache__" not in p.parts]
    files += [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    files += sorted((ROOT / "docs").glob("*.md"))
    return files


def markdown_docs() -> list[Path]:
    return [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]


def prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    out, fenced = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and (fenced is None or m.group(1) == fenced):
            fenced = m.group(1) if fenced is None else None
            continue
        if fenced is None:
            out.append(line)
    return out


def headings(path: Path) -> list[str]:
    """The text of every ATX heading (any level) of a markdown file, in order."""
    return [m.group(2) for line in prose_lines(path.read_text(encoding="utf-8"))
            if (m := HEADING.match(line))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, spaces to '-', other than letters, digits, '-'
    and '_' dropped."""
    return re.sub(r"[^\w-]", "", heading.strip().lower().replace(" ", "-"))


def anchors(path: Path) -> set[str]:
    """Anchors of a markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for h in headings(path):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def cited_file(name: str, where: Path, root: Path) -> Path | None:
    """The file a citation names: a path from the root; a bare name from the citing file's
    folder, the root or docs/."""
    places = [root] if "/" in name else [where.parent, root, root / "docs"]
    return next((p / name for p in places if (p / name).is_file()), None)


def citation_errors(text: str, where: str | Path, root: Path = ROOT) -> list[str]:
    """One line per citation in ``text`` whose file or quoted heading does not exist."""
    errors, where = [], Path(where)
    for m in CITATION.finditer(text):
        name, heading = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        target = cited_file(name, root / where, root)
        if target is None:
            errors.append(f"{where}:{line}: cites {name}, which does not exist")
        elif heading is not None and heading not in headings(target):
            errors.append(f"{where}:{line}: cites {name} \"{heading}\", but {name} has no "
                          f"such heading (it has: {'; '.join(headings(target))})")
    return errors


def link_errors(path: Path) -> list[str]:
    """One line per relative link of a markdown file whose target (or #anchor) does not exist."""
    text = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    text = INLINE_CODE.sub("", text)
    errors = []
    targets = [m.group(1) for m in INLINE_LINK.finditer(text)] + [m.group(1) for m in REFERENCE_LINK.finditer(text)]
    for link in targets:
        if not link or re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I):  # http(s), mailto, ...
            continue
        file_part, _, anchor = link.partition("#")
        target = path if not file_part else (path.parent / unquote(file_part)).resolve()
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if not target.exists():
            errors.append(f"{where}: link ({link}): {file_part} does not exist")
        elif anchor and target.is_file() and target.suffix == ".md" and unquote(anchor) not in anchors(target):
            errors.append(f"{where}: link ({link}): no heading of {target.name} has the anchor #{anchor}")
    return errors


def test_citations_name_existing_files_and_headings():
    errors = []
    for path in scanned_files():
        errors += citation_errors(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not errors, "broken doc citations:\n" + "\n".join(errors)


def test_retired_spec_named_only_in_changelog():
    named = [str(p.relative_to(ROOT)) for p in scanned_files()
             if p.name != "CHANGELOG.md" and RETIRED in p.read_text(encoding="utf-8")]
    assert not named, f"{RETIRED} is not part of the repository (cite docs/method.md): {named}"


def test_relative_links_resolve():
    errors = [e for path in markdown_docs() for e in link_errors(path)]
    assert not errors, "broken links:\n" + "\n".join(errors)


def test_method_doc_has_the_headings_others_link_to():
    wanted = ["Why cameras matter", "Phase 1: intra-camera training", "Phase 2: inter-camera training",
              "Start model", "Shared settings", "k-reciprocal Jaccard distance", "Evaluation protocol",
              "Re-ranking", "The reference's quirks", "Where calr departs from the reference",
              "Datasets and file names"]
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    level2 = [m.group(2) for line in prose_lines(text) if (m := HEADING.match(line)) and m.group(1) == "##"]
    assert level2 == wanted


def test_checkers_catch_what_they_should(tmp_path):
    """The checks above fail on a broken citation or link (every name ends in MD, built at run
    time, so that this file's own scan does not see it)."""
    md = "." + "md"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / f"guide{md}").write_text("# Guide\n\n## Step one: set up\n\n```\n## not a heading\n```\n")
    (tmp_path / f"NOTES{md}").write_text("# Notes\n")
    cite = f"docs/guide{md}"
    assert citation_errors(f'see {cite} "Step one: set up".', "x", tmp_path) == []
    assert citation_errors(f"see {cite}.", "x", tmp_path) == []
    assert citation_errors(f"see guide{md} and NOTES{md} \"Notes\".", "x", tmp_path) == []  # bare names
    assert citation_errors(f"see https://example.org/a/MISSING{md}.", "x", tmp_path) == []  # a web address
    assert len(citation_errors(f'see {cite} "Step two".', "x", tmp_path)) == 1
    assert len(citation_errors(f'see {cite} "not a heading".', "x", tmp_path)) == 1
    assert len(citation_errors(f"see docs/missing{md}.", "x", tmp_path)) == 1
    assert len(citation_errors(f'the table of DESIGN{md} "Artifacts"', "x", tmp_path)) == 1  # any name
    assert len(citation_errors(f"see src/guide{md}.", "x", tmp_path)) == 1  # a path is from the root
    page = docs / f"page{md}"
    page.write_text(f"# Page\n\n[ok](guide{md}#step-one-set-up) [top](#page) [web](https://example.org/x{md})\n"
                    f"`[code](nowhere{md})`\n\n[bad](missing{md}) [bad anchor](guide{md}#step-two)\n")
    assert [e.split(": ", 1)[1].split(")")[0] for e in link_errors(page)] == [
        f"link (missing{md}", f"link (guide{md}#step-two"]
    assert slug("Phase 2: inter-camera training") == "phase-2-inter-camera-training"
    assert slug("The reference's quirks") == "the-references-quirks"
