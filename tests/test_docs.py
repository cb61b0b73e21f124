"""The repository's own documentation: every page, link, image and module it cites exists.

Docstrings and comments point at ``docs/*.md`` for the public API, the download contract and
the storage layout; these tests keep those pointers from dangling again (they once cited a
design document that is not in the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "nbmodels"
#: Text files of the repository that may cite documentation.
TEXT_SUFFIXES = {".py", ".md", ".js", ".css", ".toml", ".ipynb", ""}
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", *DOCS.glob("*.md")]
    for folder in ("src", "tests", "js", "notebooks", "scripts", "benchmarks"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file()]
    return [
        p
        for p in files
        if p.suffix in TEXT_SUFFIXES
        # not caches, nor what a benchmark run leaves behind (its venv and output, git-ignored)
        and not any(part == "__pycache__" or part.startswith(".venv") for part in p.parts)
        and "out" not in p.relative_to(ROOT).parts[:2]
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    lines = page.read_text().splitlines()
    return {_slug(line.lstrip("#")) for line in lines if line.startswith("#")}


def test_no_citation_of_a_document_outside_the_repository() -> None:
    cited = re.compile(r"DESIGN §|DESIGN\.md|BROWSER\.md|STYLE\.md")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in _text_files()
        if p != Path(__file__).resolve()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if cited.search(line)
    ]
    assert found == []


def test_every_docs_page_cited_exists() -> None:
    cited = {
        name
        for p in _text_files()
        for name in re.findall(r"docs/([\w.-]+\.(?:md|png))", p.read_text(errors="replace"))
    }
    assert {"public-api.md", "download-contract.md", "storage.md", "notebook.md"} <= cited
    assert sorted(n for n in cited if not (DOCS / n).exists()) == []


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=str)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    for target in _LINK.findall(page.read_text()):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in _anchors(file), f"{page.name}: {target}"


def test_the_contract_has_ten_rules_each_kept_by_modules_that_exist() -> None:
    text = (DOCS / "download-contract.md").read_text()
    rules = re.findall(r"^## (\d+)\. ", text, flags=re.M)
    assert rules == [str(n) for n in range(1, 11)]
    for section in re.split(r"^## ", text, flags=re.M)[1:11]:
        where = section.split("*Where:*", 1)
        assert len(where) == 2, section.splitlines()[0]
        modules = re.findall(r"`((?:_?\w+/)?_\w+\.py)`", where[1])
        assert modules, section.splitlines()[0]
        for module in modules:
            assert (SRC / module).exists(), f"{section.splitlines()[0]}: {module}"
