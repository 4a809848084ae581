"""The README stays one screen of what to run, its quickstart commands are the ones CI runs, and every link between
the README, docs/ and the folders' READMEs leads to a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

EVALUATE = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m harness.evaluate"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest"
DASHBOARD = ".venv/bin/streamlit run leaderboard/app.py"
PAGES = sorted((REPO / "docs").glob("*.md"))
FOLDERS = ("submissions", "leaderboard", "mystery_digits")  # the folders whose READMEs link to docs/
LINKED = [REPO / "README.md", *PAGES, *(REPO / folder / "README.md" for folder in FOLDERS)]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(slug(m.group(1)))
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [a or b for a, b in LINK.findall(text)]


def test_the_quickstart_commands_are_word_for_word_those_ci_runs():
    readme = (REPO / "README.md").read_text()
    for command in (EVALUATE, TESTS, DASHBOARD):
        assert f"```bash\n{command}\n```" in readme, command
    assert f"\n{TESTS}\n" in (REPO / ".ci" / "run").read_text()


def test_the_readme_fits_one_screen_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 90
    assert {p.name for p in PAGES} >= {"organiser.md", "member.md", "scoring.md", "cluster.md", "architecture.md",
                                       "performance.md", "contributing.md", "dashboard.md"}
    for page in PAGES:
        assert f"](docs/{page.name})" in readme, page.name


def test_slug_is_githubs():
    assert slug("Members' codes, ownership and upload limits") == "members-codes-ownership-and-upload-limits"
    assert slug("Heavy models (224-px ResNets)") == "heavy-models-224-px-resnets"
    assert slug("The quick way: `python -m harness.train`") == "the-quick-way-python--m-harnesstrain"


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_leads_to_a_file_and_a_heading(page):
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # http(s), mailto: not checked here
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} leads nowhere"
        if anchor:
            assert anchor in headings(path), f"{page.name}: {link}: no heading #{anchor} in {path.name}"
