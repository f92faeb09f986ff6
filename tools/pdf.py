#!/usr/bin/env python3
"""Print the whole book to one PDF with the headless Chromium of the website test.

    python tools/pdf.py _build/singlehtml _build/pdf/companion-book.pdf

``make pdf`` builds the book as a single HTML page (Sphinx's ``singlehtml`` builder, from the
chapters executed for ``make book``) and runs this script on it. The page is opened in Chromium
(found, or installed on Debian/Ubuntu, by ``tools/browser.py``), MathJax is left to typeset every
formula, every proof, solution and other dropdown is opened, and the page is printed through the
DevTools protocol with the book's print style (``book/_static/companion.css``: code wrapped, no
buttons). ``make book`` then copies the PDF into the website, whose pages link to it ("PDF of the
book"; ``companion.site``).
"""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT = 300  # seconds for the single page to load and typeset its maths

_OPEN_AND_TYPESET = """
const done = arguments[arguments.length - 1];
document.querySelectorAll('img[loading="lazy"]').forEach(img => { img.loading = 'eager'; });
document.querySelectorAll('details').forEach(d => { d.open = true; });
document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
const mathjax = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
mathjax.then(() => done('typeset'), error => done('MathJax failed: ' + error));
"""


def _browser_tool():
    spec = importlib.util.spec_from_file_location("browser_tool", Path(__file__).with_name("browser.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_page(folder: Path) -> Path:
    """The book's single page in ``folder`` (a ``singlehtml`` build), placed where its links work.

    Sphinx writes the page as ``book/intro.html`` (the book's root document) but links its images
    and styles from the folder itself, and ``index.html`` only redirects to it; the page is
    copied to ``folder/companion-book.html``.
    """
    index = folder / "index.html"
    if not index.is_file():
        raise SystemExit(f"{index} does not exist: build the single-page book first (make pdf does)")
    text = index.read_text()
    redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', text)
    if redirect:
        text = (folder / redirect.group(1)).read_text()
    page = folder / "companion-book.html"
    page.write_text(text)
    return page


def print_pdf(page: Path, output: Path) -> int:
    """Print ``page`` (a local HTML file) to ``output``; returns the number of bytes written."""
    tool = _browser_tool()
    try:
        binary, driver_path = tool.locate()
    except tool.BrowserNotFound as missing:
        raise SystemExit(f"cannot print the PDF: {missing}") from None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    with tempfile.TemporaryDirectory() as profile:
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--allow-file-access-from-files", f"--user-data-dir={profile}", "--window-size=1100,1400"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.set_script_timeout(TIMEOUT)
            driver.get(page.resolve().as_uri())
            settled = driver.execute_async_script(_OPEN_AND_TYPESET)
            if not driver.execute_script("return !!window.MathJax"):
                raise SystemExit(f"{page} loads no MathJax: are its _static files beside it?")
            if settled != "typeset":
                raise SystemExit(f"the maths of {page} did not typeset: {settled}")
            deadline = time.monotonic() + TIMEOUT
            while not driver.execute_script("return [...document.images].every(i => i.complete)"):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the images of {page} did not load within {TIMEOUT} s")
                time.sleep(0.2)
            broken = driver.execute_script("return [...document.images].filter(i => !i.naturalWidth).map(i => i.src)")
            if broken:
                raise SystemExit(f"images of {page} that did not load: {broken[:5]}")
            pdf = driver.execute_cdp_cmd("Page.printToPDF", {
                "printBackground": True, "preferCSSPageSize": False, "paperWidth": 8.27, "paperHeight": 11.69,
                "marginTop": 0.6, "marginBottom": 0.6, "marginLeft": 0.6, "marginRight": 0.6,
                "displayHeaderFooter": True, "headerTemplate": "<span></span>",
                "footerTemplate": '<div style="font-size:8px;width:100%;text-align:center">'
                                  '<span class="pageNumber"></span> / <span class="totalPages"></span></div>',
            })
        finally:
            driver.quit()
    data = base64.b64decode(pdf["data"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    size = print_pdf(one_page(Path(args[0])), Path(args[1]))
    print(f"wrote {args[1]} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
