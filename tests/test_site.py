"""The website as a reader sees it: every page of the built book, opened in a real browser.

The book built once for the test suite (conftest.py's ``book_build``) is served on 127.0.0.1 and
each page listed in ``_toc.yml`` is opened in headless Chromium, driven by Selenium (the browser of
this machine, found or installed by ``tools/browser.py``; nothing is downloaded). On every page:
no JavaScript error, the maths typeset by MathJax (served with the site, no CDN) with no TeX left
in the text, every image loaded, every output figure captioned and numbered, every admonition
(theorems, proofs, exercises, notes) drawn with a title and every hidden solution or proof opening
on a click, the Colab links of a chapter pointing at its own notebook, and every link inside the
site leading to a page that exists, no stray output (a bare quoted value under a cell) and no role
left as text (``{glue:text}`name```). The search page must find "LayerNorm". At a phone's width
(390 px) no page is wider than the screen, and the sidebar buttons open the chapter list and the
page's contents. A full-page screenshot of each page at both widths is saved in
``_build/screenshots/`` (``phone/`` for 390 px) next to the build, for a person to look at.

Without a browser the test is skipped with the reason, except in continuous integration
(``CI=true``), where it fails.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.book

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1280,900", "--lang=en-GB",
)
#: Screenshots stop at this height (pixels): enough to see every page's layout and its first figures.
SCREENSHOT_MAX_HEIGHT = 12_000
PHONE_WIDTH = 390  # CSS pixels, a common phone's width
TIMEOUT = 20  # seconds a page may take to load, typeset and show its images


def _toc_pages() -> list[str]:
    return re.findall(r"(?:file|root): (\S+)", (ROOT / "_toc.yml").read_text())


PAGES = _toc_pages()


def _colab_url(page: str) -> str:
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    owner_repo = repository["url"].removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{repository['branch']}/{page}.ipynb"


def _browser_tool():
    spec = importlib.util.spec_from_file_location("browser_tool", ROOT / "tools" / "browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def html(book_build: Path) -> Path:
    return book_build / "_build" / "html"


@pytest.fixture(scope="module")
def screenshots(book_build: Path) -> Path:
    folder = book_build / "_build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def site(html: Path) -> Iterator[str]:
    """The built HTML served on a free port of 127.0.0.1 for the duration of the module."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, name="book-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    tool = _browser_tool()
    try:
        binary, driver_path = tool.locate()
    except tool.BrowserNotFound as missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"continuous integration must run the website test: {missing}")
        pytest.skip(str(missing))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, script: str, what: str, timeout: float = TIMEOUT) -> object:
    """Evaluate ``script`` until it returns something truthy; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.1)


# Run in the page once it has loaded: wait for MathJax, make every image load now (not when
# scrolled to), then report what the checks need in one round trip.
_SETTLE = """
const done = arguments[arguments.length - 1];
document.querySelectorAll('img[loading="lazy"]').forEach(img => { img.loading = 'eager'; });
const mathjax = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
mathjax.then(() => done('typeset'), error => done('MathJax failed: ' + error));
"""

_REPORT = """
const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
const main = document.querySelector('main') || document.body;
const prose = main.cloneNode(true);
prose.querySelectorAll('pre, code, script, style, mjx-container, .cell_input, .highlight').forEach(e => e.remove());
const imgs = [...document.querySelectorAll('main img')];
return {
  title: document.title,
  mathjax: !!document.querySelector('script[src*="mathjax"]'),
  mathjax_src: [...document.querySelectorAll('script[src*="mathjax"]')].map(s => s.src),
  maths: document.querySelectorAll('.math').length,
  untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)).slice(0, 5),
  math_errors: [...document.querySelectorAll('mjx-merror, mjx-container [style*="color: red"]')].map(e => e.textContent).slice(0, 5),
  prose: prose.textContent,
  images: imgs.map(img => ({src: img.currentSrc || img.src, done: img.complete, width: img.naturalWidth, height: img.naturalHeight})),
  output_images: [...document.querySelectorAll('main .cell_output img')].map(img => {
    const figure = img.closest('figure');
    const number = figure && figure.querySelector('figcaption .caption-number');
    return {src: img.src, figure: !!figure, id: figure ? figure.id : '', number: number ? number.textContent.trim() : ''};
  }),
  admonitions: [...main.querySelectorAll('.admonition, div.proof')].map(box => {
    const title = box.querySelector('.admonition-title, .proof-title');
    return {classes: box.className, id: box.id, visible: visible(box), title: title ? title.textContent.trim() : ''};
  }),
  colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
  links: [...main.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith(location.origin)),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  // the text a reader sees, code cells' source left out (inline code kept: a role left as text is often there)
  text: (() => { const c = main.cloneNode(true); c.querySelectorAll('.cell_input, script, style, mjx-container').forEach(e => e.remove()); return c.textContent; })(),
  stray_outputs: [...main.querySelectorAll('.cell_output .output.text_plain pre, .cell_output .output.text_html')]
    .map(e => e.textContent.trim()).filter(t => /^(['"]).*\\1$/s.test(t) && !t.includes('\\n')),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


#: A MyST role's source: ``{glue:text}`name``` (in inline code its backticks may be gone).
_ROLE = re.compile(r"\{(?:glue(?::\w+)?|ref|numref|doc|eq|cite(?::\w+)?|prf:\w+|term|download|math|abbr|py:\w+)\}`?[\w:./-]*`*")


def literal_roles(text: str) -> list[str]:
    """MyST roles left as text on a page, e.g. ``{glue:text}`main_name``` or ``{ref}`ch-x```."""
    return sorted(set(_ROLE.findall(text)))


def test_literal_roles_are_found_and_ordinary_braces_are_not() -> None:
    assert literal_roles("took {glue:text}`main_name` s; see {ref}`ch-x`.") == ["{glue:text}`main_name`", "{ref}`ch-x`"]
    assert literal_roles("the file {glue:text}main_name`` unless") == ["{glue:text}main_name``"]  # from inline code
    assert literal_roles("a set {1, 2}, a dict {'a': 1}, f'{name}' and `code`") == []


def _screenshot(driver, path: Path, height: int, width: int = 1280) -> None:
    """The page's first ``height`` pixels (at most SCREENSHOT_MAX_HEIGHT), laid out ``width`` pixels wide.

    The window is made that tall for the shot, as a full-page screenshot does (capturing beyond the
    viewport instead draws some tall pages shifted sideways).
    """
    import base64

    height = max(900, min(height, SCREENSHOT_MAX_HEIGHT))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width <= PHONE_WIDTH})
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("page", PAGES)
def test_page_as_a_reader_sees_it(page: str, site: str, html: Path, browser, screenshots: Path) -> None:
    driver = browser
    driver.get_log("browser")  # start this page's console log empty
    driver.get(site + page + ".html")
    _wait(driver, "return document.readyState === 'complete'", f"{page} did not finish loading")
    driver.set_script_timeout(TIMEOUT)
    settled = driver.execute_async_script(_SETTLE)
    _wait(driver, "return [...document.querySelectorAll('main img')].every(i => i.complete)",
          f"the images of {page} did not load")
    report = driver.execute_script(_REPORT)
    _screenshot(driver, screenshots / (page.replace("/", "__") + ".png"), report["height"])
    problems = []

    errors = _console_errors(driver)
    if errors:
        problems.append(f"JavaScript console errors: {errors}")

    # The maths: MathJax served by the site itself, typeset, without errors, no TeX left as text.
    if settled != "typeset":
        problems.append(settled)
    if report["maths"] and not report["mathjax"]:
        problems.append("the page has maths but does not load MathJax")
    if report["mathjax"]:
        outside = [src for src in report["mathjax_src"] if not src.startswith(site)]
        if outside:
            problems.append(f"MathJax is loaded from outside the site (needs internet): {outside}")
    if report["untypeset"]:
        problems.append(f"maths not typeset: {report['untypeset']}")
    if report["math_errors"]:
        problems.append(f"MathJax could not typeset (undefined macro or TeX error): {report['math_errors']}")
    leftover = re.findall(r"\$\$|\\[A-Za-z]{2,}|\\\(|\\\[", report["prose"])
    if leftover:
        problems.append(f"raw TeX in the text (MathJax did not run on it): {sorted(set(leftover))[:8]}")

    # Images and figures: every image loaded; every figure a chapter computes is captioned and numbered.
    broken = [img["src"] for img in report["images"] if not (img["done"] and img["width"] > 0 and img["height"] > 0)]
    if broken:
        problems.append(f"images that did not load: {broken}")
    uncaptioned = [img["src"] for img in report["output_images"] if not (img["figure"] and img["id"] and img["number"])]
    if uncaptioned:
        problems.append("output figures without a name, caption and number (mystnb: figure: {caption, name}): "
                        f"{uncaptioned}")

    # Theorems, proofs, exercises, solutions and notes: drawn, titled, no directive left as text.
    for box in report["admonitions"]:
        untitled_proof = "proof" in box["classes"].split() and "dropdown" not in box["classes"].split()
        if not box["visible"] or not (box["title"] or untitled_proof):
            problems.append(f"admonition not rendered with a title: {box}")
    if len({box["id"] for box in report["admonitions"] if box["id"]}) < sum(1 for box in report["admonitions"] if box["id"]):
        problems.append("admonitions share an HTML id (their dropdown buttons open the wrong one)")
    raw = re.findall(r"\{(?:prf:\w+|exercise|solution|admonition|note|warning|gpu-note)\}", report["prose"])
    if raw:
        problems.append(f"directives left as text: {sorted(set(raw))}")
    roles = literal_roles(report["text"]) if not page.startswith("book/appendix/api") else []  # the API documents them
    if roles:
        problems.append(f"roles left as text (a glue name never glued, a typo in a role): {roles[:5]}")
    if report["stray_outputs"]:
        problems.append("stray outputs (a cell ending in an expression, e.g. glue(...) that returns its value): "
                        f"{report['stray_outputs'][:5]}")

    # Colab: a chapter's links (its "Open in Colab" and the launch button) open its own notebook.
    if (ROOT / f"{page}.ipynb").is_file():
        expected = _colab_url(page)
        if not report["colab"] or any(href != expected for href in report["colab"]):
            problems.append(f"Colab links should all be {expected}, found {report['colab']}")
    elif report["colab"]:
        problems.append(f"a page without a notebook links to Colab: {report['colab']}")

    # Links inside the site lead to files that exist, and anchors on this page to elements that exist.
    missing = set()
    for href in report["links"]:
        parts = urlsplit(href)
        target = html / unquote(parts.path).lstrip("/")
        if not (target.is_file() or (target / "index.html").is_file()):
            missing.add(href)
        elif parts.fragment and unquote(parts.path) == f"/{page}.html" and unquote(parts.fragment) not in report["ids"]:
            missing.add(href)
    if missing:
        problems.append(f"links to missing pages or anchors: {sorted(missing)[:10]}")

    # Proofs and solutions in dropdowns: closed until the reader clicks, then shown.
    problems += _dropdown_problems(driver)
    if page.startswith("book/theory/") and not driver.execute_script(_DROPDOWNS + "return boxes.length"):
        problems.append("a theory chapter without proofs or solutions in dropdowns")

    assert not problems, f"{page} ({report['title']}):\n- " + "\n- ".join(problems)


_DROPDOWNS = "const boxes = [...document.querySelectorAll('main .admonition.dropdown, main div.proof.dropdown')];"


def _dropdown_problems(driver, most: int = 3) -> list[str]:
    """Open up to ``most`` dropdowns of the page with a click; what did not behave."""
    from selenium.webdriver.common.by import By

    problems = []
    for box in driver.find_elements(By.CSS_SELECTOR, "main .admonition.dropdown, main div.proof.dropdown")[:most]:
        body = box.find_elements(By.XPATH, "./*[not(contains(@class, 'admonition-title'))]")
        name = box.get_attribute("id") or box.text[:40]
        if not body or any(e.is_displayed() for e in body):
            problems.append(f"dropdown {name!r} is open before a click")
            continue
        button = box.find_elements(By.CSS_SELECTOR, "button.toggle-button")
        if not button:
            problems.append(f"dropdown {name!r} has no button")
            continue
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button[0])
        button[0].click()
        deadline = time.monotonic() + 5
        while not any(e.is_displayed() for e in body) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not any(e.is_displayed() for e in body):
            problems.append(f"dropdown {name!r} did not open on a click")
    return problems




def test_search_finds_layernorm(site: str, browser, screenshots: Path) -> None:
    """The search page, as the search box opens it, lists chapters that discuss LayerNorm."""
    driver = browser
    driver.get_log("browser")
    driver.get(site + "search.html?q=LayerNorm")
    _wait(driver, "return (document.querySelector('#search-results .search-summary') || {}).textContent"
                  " && document.querySelector('#search-results .search-summary').textContent.includes('finished')",
          "the search did not finish")
    pages = driver.execute_script(
        "return [...document.querySelectorAll('#search-results li')].map(li => li.querySelector('a').href)")
    _screenshot(driver, screenshots / "search.png", 1400)
    chapters = [href for href in pages if "/book/" in href and "/appendix/api" not in href]
    assert chapters, f"no page of the book was found for 'LayerNorm', only {pages[:5]}"
    assert not _console_errors(driver)


# At a phone's width: what sticks out past the right edge of the screen, outside anything that
# scrolls sideways by itself (a table's or a figure's container, display maths).
_WIDER_THAN_SCREEN = """
const width = document.documentElement.clientWidth;
const scrolls = el => { for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
  const s = getComputedStyle(e); if (['auto', 'scroll'].includes(s.overflowX) && e.clientWidth <= width) return true; } return false; };
const out = [];
for (const el of document.querySelectorAll('main *')) {
  if (el.closest('mjx-assistive-mml')) continue;  // MathJax's copy for screen readers, clipped to 1 px
  const r = el.getBoundingClientRect();
  if (r.width && r.right > width + 1 && getComputedStyle(el).visibility !== 'hidden' && !scrolls(el)) out.push(el.tagName.toLowerCase() + '.' + [...el.classList].join('.') + ': ' + (el.textContent || '').trim().slice(0, 50));
}
return {page: document.documentElement.scrollWidth, width: width, height: document.documentElement.scrollHeight, out: out.slice(0, 5)};
"""


@pytest.fixture()
def phone(browser) -> Iterator[object]:
    """The browser laid out as a phone: 390 CSS pixels wide, touch, the page's mobile viewport."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _open(driver, url: str) -> None:
    driver.get_log("browser")
    driver.get(url)
    _wait(driver, "return document.readyState === 'complete'", f"{url} did not finish loading")
    driver.set_script_timeout(TIMEOUT)
    driver.execute_async_script(_SETTLE)
    _wait(driver, "return [...document.querySelectorAll('main img')].every(i => i.complete)", f"the images of {url} did not load")


@pytest.mark.parametrize("page", PAGES)
def test_page_fits_a_phone(page: str, site: str, phone, screenshots: Path) -> None:
    """No page is wider than a 390 px screen: long signatures, URLs and formulas wrap or scroll."""
    _open(phone, site + page + ".html")
    time.sleep(0.2)  # companion.js marks wide maths once MathJax is done
    found = phone.execute_script(_WIDER_THAN_SCREEN)
    folder = screenshots / "phone"
    folder.mkdir(exist_ok=True)
    _screenshot(phone, folder / (page.replace("/", "__") + ".png"), found["height"], width=PHONE_WIDTH)
    phone.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    assert found["page"] <= found["width"] + 1 and not found["out"], \
        f"{page} is {found['page']} px wide on a {found['width']} px screen; sticking out: {found['out']}"


_MODAL_OPEN = """
const dialog = document.getElementById(arguments[0]);
if (!dialog || !dialog.open) return null;
return [...dialog.querySelectorAll('a')].filter(a => a.getClientRects().length && a.offsetWidth).map(a => a.textContent.trim());
"""


def _visible_button(driver, selector: str):
    from selenium.webdriver.common.by import By

    shown = [b for b in driver.find_elements(By.CSS_SELECTOR, selector) if b.is_displayed()]
    assert shown, f"no visible {selector} button"
    return shown[0]


def test_sidebar_buttons_open_the_chapter_list_and_contents_on_a_phone(site: str, phone) -> None:
    from selenium.webdriver.common.keys import Keys

    _open(phone, site + "book/theory/bounded-kernel.html")
    _visible_button(phone, ".primary-toggle").click()
    links = _wait(phone, _MODAL_OPEN.replace("arguments[0]", "'pst-primary-sidebar-modal'"),
                  "the ☰ button did not open the chapter list", timeout=5)
    assert "Notation" in links and "One LayerNorm bounds the kernel" in links, links[:10]
    phone.switch_to.active_element.send_keys(Keys.ESCAPE)
    _wait(phone, "return !document.getElementById('pst-primary-sidebar-modal').open", "the chapter list did not close", 5)
    _visible_button(phone, ".secondary-toggle").click()
    contents = _wait(phone, _MODAL_OPEN.replace("arguments[0]", "'pst-secondary-sidebar-modal'"),
                     "the Contents button did not open the page's contents", timeout=5)
    assert any("chessboard" in text.lower() for text in contents), contents[:10]
    assert not _console_errors(phone)


def test_sidebar_button_hides_and_shows_the_chapter_list_on_a_wide_screen(site: str, browser) -> None:
    _open(browser, site + "book/theory/bounded-kernel.html")
    shown = "return getComputedStyle(document.getElementById('pst-primary-sidebar')).visibility === 'visible'"
    assert browser.execute_script(shown), "the chapter list is not shown on a wide screen"
    _visible_button(browser, ".primary-toggle").click()
    _wait(browser, shown.replace("=== 'visible'", "=== 'hidden'"), "the ☰ button did not hide the chapter list", 5)
    _visible_button(browser, ".primary-toggle").click()
    _wait(browser, shown, "the ☰ button did not bring the chapter list back", 5)
    assert not _console_errors(browser)


def test_download_button_links_the_books_pdf_when_the_site_has_it(site: str, html: Path, browser) -> None:
    if not (html / "companion-book.pdf").is_file():
        pytest.skip("this build has no PDF of the book (`make pdf` builds one and then the site with it)")
    _open(browser, site + "book/theory/bounded-kernel.html")
    links = browser.execute_script("return [...document.querySelectorAll('.btn-download-pdf-button')].map(a => a.href || '')")
    assert links and all(href == site + "companion-book.pdf" for href in links), links
