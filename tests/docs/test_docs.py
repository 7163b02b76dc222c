"""The README and the docs site (docs/, mkdocs.yml) hold together: the README stays a short front
page, and every picture a page shows exists (tests/ui/test_explorer_browser.py and
tests/ui/test_data_docs_offline.py regenerate them into docs/images with FORECAST_SCREENSHOTS).
`make docs` builds the site with --strict, which fails on a broken link or heading; the commands
the pages show are run by tests/publishing/test_query.py."""

from __future__ import annotations

import re

import pytest

from tests.helpers.paths import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_picture_a_page_shows_exists(page):
    for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
        assert (page.parent / target).is_file(), (
            f"{page.relative_to(REPO)} shows {target}, which does not exist"
        )
