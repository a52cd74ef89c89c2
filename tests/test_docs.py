"""The README and the pages under docs/: short front door, links that resolve, no paths outside the repository.

Checks README.md and docs/*.md (not docs/results/*/, which `evaluate` writes). A relative link
must name a file inside the repository, and a `#anchor` must match a heading of the target page
(GitHub's slugs). Links inside fenced code blocks are not links.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 200

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")   # [text](target "title")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*?|_(?=\w)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose(text), re.M)}


def broken_links(page: Path, text: str, root: Path = REPO) -> list[str]:
    """Every relative link in ``text`` (the contents of ``page``) that does not resolve, with why."""
    bad = []
    for target in LINK.findall(prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):      # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page.resolve()
        if root.resolve() not in dest.parents and dest != root.resolve():
            bad.append(f"{target}: outside the repository")
        elif not dest.is_file():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


def test_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("README.md", "results.md", "training.md", "evaluation.md", "speed.md",
                 "faithfulness.md", "experiments.md"):
        assert page in names, f"docs page {page} is missing"


def test_readme_is_short():
    n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES} (move depth to docs/)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page):
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_paths_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for bad in ("../shared", "shared/", "/work/"):
        assert bad not in text, f"{page.name} names {bad!r}, a path a user of the repository does not have"


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    command = [line for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")]
    assert command == ["pip install -r requirements.txt && python -m pytest -q"]
    assert command[0] in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_checker_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Some `code`, here\n")
    page = tmp_path / "README.md"
    text = ("[ok](docs/a.md) [ok anchor](docs/a.md#some-code-here) [web](https://example.com)\n"
            "[gone](docs/b.md) [bad anchor](docs/a.md#nope) [out](../outside.md) ![img](docs/x.png)\n"
            "```\n[in code](docs/nothing.md)\n```\n")
    assert broken_links(page, text, root=tmp_path) == [
        "docs/b.md: no such file", "docs/a.md#nope: no heading #nope in a.md",
        "../outside.md: outside the repository", "docs/x.png: no such file"]
