"""The README and the reference pages point only at what exists: files, headings, commands and modules; the notebooks'
links to the pages too. A link that breaks fails here, not in a reader's browser."""

import re

import nbformat
import pytest

from utils import REPO_ROOT

GITHUB = "https://github.com/grpo-math-kit/grpo-math-kit/blob/main/"
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def broken_links(text: str, page) -> list[str]:
    """The links in ``text`` (read from ``page``, or a folder for text without headings) that point nowhere."""
    broken, base = [], page if page.is_dir() else page.parent
    for target in LINK.findall(text):
        if target.startswith(GITHUB):
            target = str(REPO_ROOT / target.removeprefix(GITHUB))
        elif target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (base / file).resolve() if file else None
        if path is not None and not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and slug(anchor) not in anchors(path if path else page):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_points_at_a_file_and_heading_that_exist(page):
    assert not broken_links(page.read_text(), page), page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_names_a_module_or_script_that_exists(page):
    text = page.read_text()
    modules = set(re.findall(r"python3? -m (utils(?:\.\w+)+)", text))
    found = lambda m: (REPO_ROOT / f"{m.replace('.', '/')}.py").is_file() or (  # noqa: E731
        REPO_ROOT / m.replace(".", "/") / "__init__.py").is_file()
    missing = [m for m in modules if not found(m)]
    scripts = set(re.findall(r"bash (tests/[\w./-]+\.sh)", text))
    missing += [s for s in scripts if not (REPO_ROOT / s).is_file()]
    assert not missing, missing


def test_every_reference_page_is_linked_from_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    assert all(f"(docs/{page.name})" in readme for page in PAGES[1:])


def test_the_notebooks_links_point_at_pages_that_exist():
    for path in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        assert not broken_links(text, path.parent), path.name  # a folder: notebooks link to other files only


def test_the_checker_finds_a_broken_file_heading_and_module(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[a](missing.md) [b](#nowhere) [c](#title) [d](https://example.com)\n")
    assert broken_links(page.read_text(), page) == ["missing.md: no such file", "#nowhere: no such heading"]
