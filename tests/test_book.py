"""The whole book builds from scratch with every chapter executed and warnings as errors.

This is how the test suite executes the chapters (the one way: through the book build, the
``book_build`` fixture of conftest.py, which tests/test_site.py shares). Any exception in a cell,
any output on stderr (warnings included), any broken cross-reference or citation fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.book


@pytest.fixture(scope="module")
def html(book_build: Path) -> Path:
    return book_build / "_build" / "html"


def test_every_toc_page_is_rendered(html: Path) -> None:
    toc = (ROOT / "_toc.yml").read_text()
    for page in re.findall(r"(?:file|root): (\S+)", toc):
        assert (html / f"{page}.html").is_file(), page


def test_first_chapter_has_its_figure_and_passed_its_checks(html: Path) -> None:
    page = (html / "book" / "introduction" / "first-look.html").read_text()
    assert "all checks passed" in page
    assert 'id="fig-first-look"' in page
    images = re.findall(r'<img[^>]+src="([^"]+)"', page)
    figures = [src for src in images if "_images/" in src]
    assert figures, "the chapter shows no figure"
    for src in figures:
        assert (html / "book" / "introduction" / src).resolve().is_file(), src
    # Numbers in the text are glued from the computation, never left as placeholders.
    assert "{glue:text}" not in page


def test_colab_button_points_at_the_notebook(html: Path) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    owner_repo = config["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    branch = config["repository"]["branch"]
    page = (html / "book" / "introduction" / "first-look.html").read_text()
    expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{branch}/book/introduction/first-look.ipynb"
    assert page.count(expected) >= 2, "both the launch button and the chapter's link should open the .ipynb"


def test_faces_chapter_says_which_data_it_shows_and_passed_its_checks(html: Path) -> None:
    page = (html / "book" / "experiments" / "faces.html").read_text()
    assert "all checks passed" in page
    assert 'id="fig-faces-error"' in page and "{glue:text}" not in page
    # Without a saved full result (CI), the page must say that it shows the synthetic stand-in.
    assert "synthetic stand-in (not faces)" in page or "This build shows results on <strong>UTKFace" in page
    assert "susanqq.github.io/UTKFace" in page and "faces-full.json" in page  # how to get the real numbers


def test_protein_chapter_has_table_1_and_figure_3_and_passed_its_checks(html: Path) -> None:
    page = (html / "book" / "experiments" / "protein.html").read_text()
    assert "all checks passed" in page
    assert 'id="fig-protein"' in page
    assert "{glue:text}" not in page
    # Table 1 is a Markdown output; it must render as a table with the paper's bold entries.
    table = page[page.index("OOD R² (paper)") - 2000:]
    assert "<table" in table[:2500] and "<strong>0.50 ± 0.02</strong>" in table


def test_transformer_and_normalisation_chapters_passed_their_checks(html: Path) -> None:
    transformer = (html / "book" / "experiments" / "transformer.html").read_text()
    normalisation = (html / "book" / "beyond" / "normalisation.html").read_text()
    for page, figures in ((transformer, ("fig-transformer-sequence", "fig-transformer-scale")),
                          (normalisation, ("fig-normalisation-kernels", "fig-normalisation-trained"))):
        assert "all checks passed" in page and "{glue:text}" not in page
        assert all(f'id="{name}"' in page for name in figures)
    # The transformer page says whether it shows the stored full-profile run.
    assert "No complete full-profile results" in transformer or "stored full-profile results" in transformer


def test_no_page_shows_an_error_output(html: Path) -> None:
    # A figure that fails to render (e.g. bad mathtext) appears as a traceback in the page without
    # failing the build; so does any other error the display machinery swallows.
    for page in (html / "book").rglob("*.html"):
        text = page.read_text()
        assert "output traceback" not in text and "Traceback (most recent call last)" not in text, page.name


def test_no_page_shows_a_stray_output_or_a_role_as_text(html: Path) -> None:
    # A cell whose last line is an expression (e.g. a helper that returns its value) shows it as a
    # bare quoted string under the cell; a role whose target is missing shows as its source text.
    stray = re.compile(r'output text_plain[^>]*><div class="highlight"><pre><span></span>(&#39;|&quot;)[^\n<]*\1\n</pre>')
    role = re.compile(r"\{(?:glue(?::\w+)?|ref|numref|doc|eq|cite(?::\w+)?|prf:\w+|term|download|math|abbr|py:\w+)\}")
    problems = []
    for page in sorted((html / "book").rglob("*.html")):
        text = page.read_text()
        problems += [f"{page.name}: stray output {m.group(0)[-40:]!r}" for m in stray.finditer(text)]
        if not page.name.startswith("api"):  # the API reference documents the roles the chapters use
            problems += [f"{page.name}: role left as text near {text[m.start():m.start() + 40]!r}" for m in role.finditer(text)]
    assert not problems, "\n".join(problems[:20])
