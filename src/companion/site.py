"""The book's website: its status page, its API reference and the GPU note of the heavy chapters.

A Sphinx extension, loaded by the book's ``_config.yml``, with four directives. Each computes its
content when the book is built, so none of it is typed into a page:

``{build-environment}``
    the build's date, profile, devices, machine, Python, commit and package versions (appendix
    "Status of this build");
``{saved-results}``
    every saved result of an experiment in the checkout, with its provenance
    (:func:`companion.artefacts.catalogue`; appendix "Status of this build");
``{api-modules} [module ...]``
    one section per public module of :mod:`companion` named in the argument (a package stands for
    its submodules too; no argument: those that no other page of :data:`companion.apidoc.API_PAGES` takes),
    documented by ``sphinx.ext.autodoc``, with the chapters that import it (appendix "API
    reference" and its pages);
``{gpu-note} <experiment>``
    the admonition at the top of a heavy chapter (e.g. "Proteins larger than any seen in
    training"): what its ``full`` profile changes (from the experiment's ``CONFIGS``), the
    chapter's own statement of what it runs and costs, the measured time of the saved ``full`` run
    when there is one, and how to get a GPU in Colab.

Pages that use these directives are read again on every build, so their dates and versions are
never those of an older build. The extension also mends what the website test found in the
theme and its plug-ins: a dropdown proof gets a title and every proof its own id, inline scripts
are not repeated, launch buttons appear only on pages with a notebook, and the API reference
links names as the docstrings write them. Nothing here is imported by the chapters themselves.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import companion
from companion import artefacts, profile
from companion.apidoc import chapters_importing, field_lines, math_roles, modules_of_page, notebook_code, owner_class

__all__ = [
    "device_name", "environment_rows", "saved_rows", "profile_changes", "gpu_note_lines", "setup",
]

#: Distributions listed on the status page besides those the doctor checks and artefacts record.
SITE_PACKAGES = ("sphinx", "sphinx-book-theme", "sphinx-proof", "sphinx-exercise", "sphinxcontrib-bibtex",
                 "sphinx-mathjax-offline", "selenium")
_DYNAMIC = "companion-dynamic"
#: The book as one PDF (``make pdf``, tools/pdf.py): written to ``_build/pdf/``, published with the website.
PDF_NAME = "companion-book.pdf"
def _versions() -> list[tuple[str, str]]:
    from companion import doctor

    names = dict.fromkeys([*doctor.PACKAGES, *artefacts.VERSIONED, *SITE_PACKAGES])
    rows = []
    for name in names:
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return rows


def device_name(device: str) -> str:
    """A device as a reader names it: ``cpu`` for JAX's ``cpu:cpu``, ``NVIDIA H100 (gpu)`` for ``gpu:NVIDIA H100``.

    Saved results record devices as ``platform:kind`` (:func:`companion.artefacts.provenance`).
    """
    platform, _, kind = device.partition(":")
    if not kind or kind.lower() == platform.lower():
        return platform or kind
    return f"{kind} ({platform})"


def _devices(devices: list[str] | tuple[str, ...]) -> str:
    return ", ".join(dict.fromkeys(device_name(d) for d in devices))


def environment_rows() -> list[tuple[str, str]]:
    """(what, value) rows describing this build: date, profile, devices, machine, Python, commit, versions."""
    origin = artefacts.provenance()
    commit = origin["commit"] or "unknown (not a git checkout)"
    if origin["commit"] and origin["source_modified"]:
        commit += " (with uncommitted changes to src/ or the lock)"
    rows = [
        ("built", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("profile", f"`{profile.active()}` (`${profile.ENV_VAR}`)"),
        ("devices JAX sees", _devices(origin["devices"])),
        ("machine", origin["machine"]),
        ("Python", origin["python"]),
        ("commit", f"`{commit}`"),
    ]
    return rows + [(f"`{name}`", version) for name, version in _versions()]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def saved_rows(checkout: Path | None = None) -> list[dict[str, str]]:
    """One row per saved result (:func:`companion.artefacts.catalogue`), formatted for a table."""
    rows = []
    for saved in artefacts.catalogue(checkout):
        base = checkout or Path(companion.__file__).resolve().parents[2]
        try:
            where = saved.path.relative_to(base)
        except ValueError:
            where = saved.path
        dates = sorted({d[:10] for d in saved.dates})
        rows.append({
            "experiment": saved.experiment,
            "profile": saved.profile + ("" if saved.complete in (None, True) else " (incomplete)"),
            "file": f"`{where}`",
            "date": " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "not recorded",
            "device": _devices(saved.devices) or "not recorded",
            "time": _duration(saved.wall_seconds),
            "versions": ", ".join(f"{k} {v}" for k, v in saved.versions.items() if k in ("jax", "flax", "optax", "torch")),
            "commit": ", ".join(c[:10] for c in saved.commits) or "not recorded",
        })
    return rows


def profile_changes(experiment: str) -> str:
    """What the ``full`` profile of ``experiment`` changes from ``ci``, from its module's ``CONFIGS``.

    ``experiment`` is a name of ``python -m companion run`` (:data:`companion.cli.EXPERIMENTS`).
    """
    import dataclasses
    import importlib

    from companion.cli import EXPERIMENTS

    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; `python -m companion run` knows {', '.join(EXPERIMENTS)}")
    configs = importlib.import_module(EXPERIMENTS[experiment]).CONFIGS
    ci, full = (dataclasses.asdict(configs[name]) for name in ("ci", "full"))
    changes = [f"`{key}={full[key]!r}` (`ci`: {ci[key]!r})" for key in full if full[key] != ci.get(key)]
    return ", ".join(changes) if changes else "the same sizes as `ci`"


def gpu_note_lines(experiment: str, statement: list[str]) -> list[str]:
    """The text of a heavy chapter's GPU note (MyST): what ``full`` changes, the chapter's own
    ``statement`` of what it does and costs, the measured time of its saved ``full`` run (or that
    there is none), and how to get a GPU in Colab."""
    saved = [s for s in artefacts.catalogue() if s.experiment == experiment and s.profile == "full"]
    if saved:
        run = saved[0]
        days = ", ".join(sorted({d[:10] for d in run.dates})) or "date not recorded"
        measured = (f"The saved `full` result that this page shows took {_duration(run.wall_seconds)} on "
                    f"{_devices(run.devices) or 'an unrecorded device'} ({days}).")
    else:
        measured = ("This copy of the book has no saved `full` result of this chapter, so its run time has not "
                    f"been measured here; the page shows its live run in the `{profile.active()}` profile.")
    return [
        f"The `full` profile runs the paper's protocol: {profile_changes(experiment)}.", "",
        *statement, "", measured, "",
        "**In Colab**, choose *Runtime → Change runtime type → T4 GPU* (or any GPU offered) before running "
        "the chapter: with a GPU the chapter runs in the `full` profile by itself. On your own machine set "
        "`COMPANION_PROFILE=full`; see {ref}`troubleshooting` if JAX does not see the GPU.",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def setup(app: Any) -> dict[str, Any]:
    """Register the directives of the status page, the API reference and the GPU note with Sphinx."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class _Generated(SphinxDirective):
        def parse(self, lines: list[str], titles: bool = False) -> list[nodes.Node]:
            self.env.metadata[self.env.docname][_DYNAMIC] = True
            box = nodes.container()
            self.state.nested_parse(StringList(lines, source=self.env.docname), self.content_offset, box, match_titles=titles)
            return box.children

    class BuildEnvironment(_Generated):
        def run(self) -> list[nodes.Node]:
            return self.parse(_table(["what", "this build"], [list(row) for row in environment_rows()]))

    class SavedResults(_Generated):
        def run(self) -> list[nodes.Node]:
            rows = saved_rows()
            if not rows:
                return self.parse(["This copy of the book holds no saved result of an experiment: every number "
                                   "and figure comes from the live run of its page."])
            lines: list[str] = []
            for row in rows:  # one small table per result: eight columns do not fit a page
                title = f"**{row.pop('experiment')}**, `{row.pop('profile')}` profile"
                lines += [*_table(["saved result", title], [[key, value] for key, value in row.items()]), ""]
            return self.parse(lines)

    class ApiModules(_Generated):
        optional_arguments = 20

        def run(self) -> list[nodes.Node]:
            sources = {doc: notebook_code(Path(self.env.doc2path(doc))) for doc in self.env.found_docs}
            used = chapters_importing(sources)
            lines: list[str] = []
            for module in modules_of_page(self.arguments):
                lines += [f"({'api-' + module.replace('.', '-')})=", f"## `{module}`", ""]
                if module in used:
                    lines += ["Used in " + ", ".join(f"{{doc}}`/{doc}`" for doc in used[module]) + ".", ""]
                # Each module documents what it defines (public names); a package's re-exports of
                # its submodules' functions are documented once, with the submodule.
                lines += ["```{eval-rst}", f".. automodule:: {module}", "   :ignore-module-all:", "```", ""]
            return self.parse(lines, titles=True)

    class GpuNote(_Generated):
        required_arguments = 1
        has_content = True

        def run(self) -> list[nodes.Node]:
            note = nodes.admonition(classes=["gpu-note", "tip"])
            note += nodes.title(text="GPU note: the paper's protocol")
            note += self.parse(gpu_note_lines(self.arguments[0], list(self.content)))
            return [note]

    def always_reread(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
        return [doc for doc, meta in env.metadata.items() if meta.get(_DYNAMIC) and doc not in removed]

    def numpy_sections(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
        # sphinx.ext.napoleon's NumPy and Google sections ("Parameters", "Returns", ...), but not on
        # constants and properties: napoleon reads a first line "A: B" of those as "type: text", and
        # "#: The paper's Table 1 (Sec. 4.2): ..." would become a link to a type that does not exist.
        # Maths in docstrings: $...$ becomes the :math: role, as in the book's text.
        lines[:] = [math_roles(line) for line in lines]
        if what in ("attribute", "data", "property"):
            if what == "attribute" and not any(line.strip() for line in lines):
                owner = owner_class(name)
                if owner is not None:
                    lines[:] = field_lines(owner, name.rpartition(".")[2])
            return
        from sphinx.ext.napoleon import Config
        from sphinx.ext.napoleon.docstring import GoogleDocstring, NumpyDocstring

        config = Config(napoleon_use_rtype=False, napoleon_use_ivar=True, napoleon_attr_annotations=False)
        for style in (NumpyDocstring, GoogleDocstring):
            lines[:] = style(lines, config, app, what, name, obj, options).lines()

    def drop_repeated_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
        # Sphinx 7.4 lists an inline script that an extension adds once the build has started twice
        # (as filename None, then ""; fixed in Sphinx 8.2, sphinx-doc/sphinx#13402). sphinx-thebe's
        # `const THEBE_JS_URL = ...` declared twice is a JavaScript error on every page.
        seen, unique = set(), []
        for script in context.get("script_files", []):
            key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        context["script_files"][:] = unique

    def resolve_short_names(app: Any, env: Any, node: Any, contnode: Any) -> Any:
        # Docstrings name objects as they are imported where they are used: MLPSpec.weight_scales
        # in companion.kernels, or companion.kernels.kernel (a package's re-export of
        # companion.kernels.recursion.kernel). Sphinx looks for such names in the current module
        # only; link the one documented object they can mean (preferring the current package), and
        # leave anything ambiguous or unknown to nitpicky's warning.
        if node.get("refdomain") != "py":
            return None
        from sphinx.util.nodes import make_refnode

        target = node["reftarget"].lstrip(".~")
        domain = env.get_domain("py")
        kinds = set(domain.objtypes_for_role(node["reftype"]) or ())
        objects = {name: entry for name, entry in domain.objects.items() if entry.objtype in kinds}
        found = [name for name in objects if name.endswith("." + target)]
        if not found and "." in target:  # a package's re-export: the package, then any submodule
            package, name = target.rsplit(".", 1)
            found = [full for full in objects if full.startswith(package + ".") and full.endswith("." + name)]
        module = node.get("py:module") or ""
        for scope in ("", module + ".", module.rsplit(".", 1)[0] + "."):
            chosen = [name for name in found if name.startswith(scope)]
            if len(chosen) == 1:
                entry = objects[chosen[0]]
                return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, chosen[0])
        return None

    from sphinx.ext.autodoc import DataDocumenter, ModuleDocumenter

    class PublicData(DataDocumenter):
        # autodoc shows module-level data only with a "#:" comment; also show those a module lists
        # in __all__ (e.g. CONFIGS, whose value is the sizes of each profile), so that docstrings
        # can link to them, and without the docstring of their type (dict's, for a dict).
        @classmethod
        def can_document_member(cls, member: Any, membername: str, isattr: bool, parent: Any) -> bool:
            if super().can_document_member(member, membername, isattr, parent):
                return True
            listed = isinstance(parent, ModuleDocumenter) and membername in (getattr(parent.object, "__all__", None) or ())
            return listed and not callable(member) and not isinstance(member, type(companion))

        def get_doc(self) -> list[list[str]] | None:
            comment = self.get_module_comment(self.objpath[-1])
            if comment:
                return [comment]
            if getattr(self.object, "__doc__", None) == getattr(type(self.object), "__doc__", None):
                return []
            return super().get_doc()

    def proofs_that_fold(app: Any, doctree: nodes.document) -> None:
        # sphinx-proof 0.4 renders a proof as an untitled admonition starting "Proof. ", with the
        # same HTML id for every proof of a page. A proof in a dropdown (":class: dropdown") needs a
        # title to hold its button (without one togglebutton.js stops with an error, and every later
        # dropdown of the page, exercises' solutions included, stays open) and an id of its own
        # (else every button opens the page's first proof).
        for number, box in enumerate(
            (b for b in doctree.findall(nodes.admonition) if "proof" in b["classes"] and b["ids"] == ["proof"]), 1
        ):
            box["ids"] = [f"proof-{number}"]
            if "dropdown" not in box["classes"] or (box.children and isinstance(box[0], nodes.title)):
                continue
            first = box.children[0] if box.children else None
            if isinstance(first, nodes.paragraph) and first.children and first[0].astext().startswith("Proof. "):
                first[0] = nodes.Text(first[0].astext()[len("Proof. "):])
            box.insert(0, nodes.title(text="Proof"))

    def launch_only_notebooks(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
        # sphinx-book-theme offers its launch buttons (Colab, ...) on a MyST text notebook too, and
        # points Colab at the .md, which Colab cannot open. Keep them for pages that have an .ipynb.
        if pagename not in app.env.all_docs:
            return
        source = Path(app.env.doc2path(pagename))
        if source.suffix != ".ipynb" and not source.with_suffix(".ipynb").is_file():
            buttons = context.get("header_buttons") or []
            buttons[:] = [button for button in buttons if button.get("label") != "launch-buttons"]

    def find_the_pdf(app: Any, config: Any) -> None:
        # `make pdf` prints the book to _build/pdf/ before the website is built. Whether there is
        # one is a setting of the build (companion_pdf), so that every page is written again when
        # it appears or goes, and not only the pages that changed.
        pdf = Path(app.outdir).parent / "pdf" / PDF_NAME
        config.companion_pdf = PDF_NAME if Path(app.outdir).name == "html" and pdf.is_file() else ""

    def publish_the_pdf(app: Any) -> None:
        # Copy the PDF into the site and tell book/_static/companion.js to link it from every
        # page's download button.
        if app.builder.name == "html" and app.config.companion_pdf:
            pdf = Path(app.outdir).parent / "pdf"
            app.config.html_extra_path = [*app.config.html_extra_path, str(pdf)]
            app.add_js_file(None, body=f"window.companionPdf = {json.dumps(app.config.companion_pdf)};")

    app.add_config_value("companion_pdf", "", "html")
    app.connect("config-inited", find_the_pdf)
    app.connect("builder-inited", publish_the_pdf)
    def html_visitors_for_one_page(app: Any) -> None:
        # The single-page build of `make pdf`: once any extension registers a visitor for
        # "singlehtml" (sphinx-exercise does), Sphinx gives that builder those alone, not the
        # "html" ones, and the build stops at the first other node ("departing unknown node type:
        # HideCodeCellNode"). Give it every html visitor it lacks.
        if app.builder.name == "singlehtml":
            handlers = app.registry.translation_handlers
            single = handlers.setdefault("singlehtml", {})
            for node, visitors in handlers.get("html", {}).items():
                single.setdefault(node, visitors)

    app.connect("builder-inited", html_visitors_for_one_page)
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("html-page-context", launch_only_notebooks, priority=510)
    app.connect("doctree-read", proofs_that_fold)
    app.add_autodocumenter(PublicData, override=True)
    app.connect("missing-reference", resolve_short_names)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    app.connect("autodoc-process-docstring", numpy_sections)
    app.add_directive("build-environment", BuildEnvironment)
    app.add_directive("saved-results", SavedResults)
    app.add_directive("api-modules", ApiModules)
    app.add_directive("gpu-note", GpuNote)
    app.connect("env-get-outdated", always_reread)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
