"""The reader-facing pages and files that need no book build: the appendix, the exercises of the
theory chapters, the figure style, the GPU note, the citation files, the status page's data and
the browser finder of the website test."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from companion import artefacts, plotting, site
from conftest import ROOT

CHAPTERS = sorted(p for part in ("introduction", "theory", "experiments", "beyond")
                  for p in (ROOT / "book" / part).glob("*.md"))
BIN = Path(sys.executable).parent


def test_the_appendix_has_troubleshooting_api_status_and_cite_pages() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    appendix = next(part for part in toc["parts"] if part["caption"] == "Appendix")
    files = [chapter["file"] for chapter in appendix["chapters"]]
    for page in ("troubleshooting", "api", "status", "cite"):
        assert f"book/appendix/{page}" in files


def _exercises(text: str) -> tuple[list[str], dict[str, str]]:
    exercises = re.findall(r"^(?::{3,}|`{3,})\{exercise\}[^\n]*\n(?::label: *(\S+))?", text, re.M)
    solutions = {label: body for fence, label, body in
                 re.findall(r"^(:{3,}|`{3,})\{solution\} *(\S+)\n(.*?)^\1 *$", text, re.M | re.S)}
    return exercises, solutions


def test_every_theory_chapter_ends_with_exercises_with_hidden_solutions() -> None:
    """At least two exercises, each labelled with a solution in a dropdown, and one to compute."""
    for chapter in (p for p in CHAPTERS if p.parent.name == "theory"):
        exercises, solutions = _exercises(chapter.read_text())
        assert len(exercises) >= 2, f"{chapter.name}: give at least a derivation and a computational exercise"
        for label in exercises:
            assert label, f"{chapter.name}: every exercise needs a :label: for its solution"
            assert label in solutions, f"{chapter.name}: exercise {label} has no {{solution}} {label}"
            assert ":class: dropdown" in solutions[label], f"{chapter.name}: the solution of {label} should be hidden"
        assert any("```" in body for body in solutions.values()), f"{chapter.name}: no exercise asks for code"


def test_exercise_parser_reads_the_books_syntax() -> None:
    text = (":::{exercise}\n:label: ex-a\n\nShow it.\n:::\n\n:::{solution} ex-a\n:class: dropdown\n\n$x$\n:::\n"
            "::::{exercise}\n:label: ex-b\nCompute.\n::::\n::::{solution} ex-b\n:class: dropdown\n```python\n1\n```\n::::\n")
    exercises, solutions = _exercises(text)
    assert exercises == ["ex-a", "ex-b"] and set(solutions) == {"ex-a", "ex-b"} and "```" in solutions["ex-b"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_that_draw_use_the_book_style(chapter: Path) -> None:
    text = chapter.read_text()
    if re.search(r"\bplt\.(subplots|figure)\(", text):
        assert "plotting.use_style()" in text, f"{chapter.name} draws figures without companion.plotting.use_style()"


def test_use_style_shows_figures_as_svg_in_a_notebook(tmp_path: Path, monkeypatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))
    shell = InteractiveShell.instance()
    try:
        plotting.use_style()
        formatters = shell.display_formatter.formatters
        assert formatters["image/svg+xml"].lookup_by_type(Figure)
        with pytest.raises(KeyError):
            formatters["image/png"].lookup_by_type(Figure)
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapters_that_send_readers_to_a_full_run_carry_the_gpu_note(chapter: Path) -> None:
    text = chapter.read_text()
    for experiment in sorted(set(re.findall(r"python -m companion run (\w+) --profile full", text))):
        assert re.search(rf"^:{{3,}}\{{gpu-note\}} {experiment}$", text, re.M), \
            f"{chapter.name} runs the full {experiment} experiment: add a {{gpu-note}} {experiment} at its top"


def test_citation_file_is_valid_and_agrees_with_the_book() -> None:
    checked = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.citation-file-format",
                              str(ROOT / "CITATION.cff")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert cff["version"] == version and cff["repository-code"] == url
    bib = (ROOT / "references.bib").read_text()
    paper = re.search(r"@inproceedings\{ziomek2025layernorm,(.*?)\n\}", bib, re.S).group(1)
    assert f"{{{cff['preferred-citation']['title']}}}" in paper
    cite = (ROOT / "book" / "appendix" / "cite.md").read_text()
    assert f"version = {{{version}}}" in cite and url in cite and cff["title"] in cite
    assert paper.strip() in cite, "the cite page should show references.bib's entry of the paper"


def _write(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_catalogue_lists_both_layouts_of_saved_results_with_their_provenance(tmp_path: Path) -> None:
    _write(tmp_path / "artefacts" / "protein" / "full" / "summary.json", {
        "experiment": "protein", "profile": "full", "complete": True, "runs": 50, "wall_seconds": 612.5,
        "run_dates": ["2026-01-02T10:00:00+00:00", "2026-01-03T09:00:00+00:00"], "run_devices": ["gpu:NVIDIA H100"],
        "run_commits": ["0123456789abcdef"], "provenance": {"versions": {"jax": "0.9.2"}, "commit": "fedcba"},
    })
    _write(tmp_path / "book" / "experiments" / "results" / "faces-full.json", {
        "format": 1, "experiment": "faces", "provenance": {
            "created": "2026-02-01T08:00:00+00:00", "jax devices": ["gpu:Tesla T4"], "total seconds": 420.0,
            "git commit": "abc1234", "versions": {"jax": "0.9.2", "torch": "2.9.0"}}})
    _write(tmp_path / "book" / "experiments" / "results" / "other.json", {"experiment": "x"})  # no provenance
    found = artefacts.catalogue(tmp_path)
    assert [(s.experiment, s.profile) for s in found] == [("protein", "full"), ("faces", "full")]
    protein, faces = found
    assert protein.devices == ("gpu:NVIDIA H100",) and protein.wall_seconds == 612.5 and protein.complete
    assert faces.dates == ("2026-02-01T08:00:00+00:00",) and faces.commits == ("abc1234",)
    assert faces.wall_seconds == 420.0 and faces.versions["torch"] == "2.9.0" and faces.complete is None
    rows = site.saved_rows(tmp_path)
    assert rows[0]["date"] == "2026-01-02 to 2026-01-03" and rows[0]["time"] == "10 min"
    assert rows[1]["file"] == "`book/experiments/results/faces-full.json`" and rows[1]["device"] == "Tesla T4 (gpu)"
    assert artefacts.catalogue(tmp_path / "empty") == []


def test_devices_are_named_as_a_reader_names_them() -> None:
    assert site.device_name("cpu:cpu") == "cpu" and site.device_name("gpu:NVIDIA H100") == "NVIDIA H100 (gpu)"
    assert site.device_name("tpu") == "tpu"


def test_status_page_rows_describe_this_environment() -> None:
    rows = dict(site.environment_rows())
    assert rows["profile"].startswith("`ci`") and ":" not in rows["devices JAX sees"]
    assert rows["`jax`"] == "0.9.2" and "`sphinx-mathjax-offline`" in rows


def _browser_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("browser_tool", ROOT / "tools" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_browser_finder_takes_a_chosen_pair_and_refuses_half_of_one(monkeypatch, tmp_path: Path) -> None:
    tool = _browser_tool()
    browser, driver = tmp_path / "chrome", tmp_path / "chromedriver"
    for path in (browser, driver):
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(browser))
    monkeypatch.setenv("CHROMEDRIVER", str(driver))
    assert tool.locate() == (browser, driver)
    monkeypatch.setenv("CHROMEDRIVER", str(tmp_path / "missing"))
    with pytest.raises(tool.BrowserNotFound, match="must both be executables"):
        tool.locate()


def test_browser_finder_only_reports_with_find(monkeypatch, capsys) -> None:
    tool = _browser_tool()
    monkeypatch.setattr(tool, "locate", lambda: (_ for _ in ()).throw(tool.BrowserNotFound("none here")))
    monkeypatch.setattr(tool, "_apt_install", lambda: pytest.fail("--find must not install"))
    assert tool.main(["--find"]) == 0
    assert "none here" in capsys.readouterr().out


def test_legible_raises_small_text_and_thins_log_minor_labels() -> None:
    import matplotlib.pyplot as plt

    plotting.use_style()
    fig, (ax, other) = plt.subplots(1, 2, figsize=(12, 3.5))
    ax.plot([300, 700], [1, 2], label="a curve")
    ax.set_xscale("log")
    ax.legend(fontsize=5)
    fig.colorbar(other.imshow(np.eye(3)), ax=other)
    try:
        assert plotting.smallest_text_px(fig)[0] < plotting.MIN_TEXT_PX
        plotting.legible(fig)
        size, text = plotting.smallest_text_px(fig)
        assert size >= plotting.MIN_TEXT_PX - 1e-9, (size, text)
        minor = [t.get_text() for t in ax.xaxis.get_ticklabels(which="minor") if t.get_text()]
        # 300 to 700 is less than half a decade: matplotlib would label 3, 4, 5, 6 and 7 x 10^2
        assert minor and all(re.search(r"\{[235]\\times", label) for label in minor), minor
    finally:
        plt.close(fig)


def test_curves_that_coincide_share_one_legend_entry_that_says_so() -> None:
    import matplotlib.pyplot as plt

    x = np.geomspace(1, 1e6, 50)
    values = {"no LN": x**2, "LN first": np.full_like(x, 4.0), "LN last": np.full_like(x, 4.01)}
    assert plotting.coincident(values, log=True) == [["no LN"], ["LN first", "LN last"]]
    assert plotting.coincident(values, tol=1e-5, log=True) == [["no LN"], ["LN first"], ["LN last"]]
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    plotting.curves(ax, x, values)
    labels = [line.get_label() for line in ax.get_lines()]
    plt.close(fig)
    assert labels == ["no LN", "LN first = LN last (one line at this scale)"]


def test_bounded_kernel_figures_are_legible_at_the_text_width_and_on_a_phone() -> None:
    """The chapter's figures, drawn by the package, keep every text at least MIN_TEXT_PX at the
    book's text width and at the smallest scale a phone shows them (PHONE_MIN_SCALE)."""
    import matplotlib.pyplot as plt

    from companion.experiments import bounded_kernel as bk

    plotting.use_style()
    cfg = dataclasses.replace(bk.config("ci"), norm_points=9, heat_points=9)
    grid, heat = bk.heatmaps(cfg, bk.placements(cfg.heat_depth))
    fig_heat = bk.plot_heatmaps(grid, heat)
    fig_diag, ax = plt.subplots(figsize=(6, 3.6))
    bk.plot_diagonals(ax, bk.diagonals(cfg, bk.placements(cfg.depth)))
    try:
        for fig in (fig_heat, fig_diag):
            natural = fig.get_figwidth() * 96
            assert natural <= plotting.TEXT_WIDTH_PX, "a figure wider than the text column is shrunk on every screen"
            for width in (plotting.TEXT_WIDTH_PX, plotting.PHONE_MIN_SCALE * natural):
                size, text = plotting.smallest_text_px(fig, width)
                assert size >= plotting.MIN_TEXT_PX, f"{text!r} is {size:.1f} px at {width:.0f} px"
        # the colour bars' labels stay clear of the next panel
        fig_heat.canvas.draw()
        renderer = fig_heat.canvas.get_renderer()
        boxes = [ax.get_tightbbox(renderer) for ax in fig_heat.axes if ax.get_visible()]
        overlaps = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not overlaps, f"panels or colour bars overlap: {overlaps}"
    finally:
        plt.close(fig_heat)
        plt.close(fig_diag)


def test_the_site_script_keeps_figures_at_the_scale_their_text_was_checked_at() -> None:
    script = (ROOT / "book" / "_static" / "companion.js").read_text()
    assert f"var PHONE_MIN_SCALE = {plotting.PHONE_MIN_SCALE};" in script
