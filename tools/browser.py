#!/usr/bin/env python3
"""The headless browser of the website test: find Chromium and its driver, or install them.

    python3 tools/browser.py          # find them; on Debian/Ubuntu as root (or with sudo), install if missing
    python3 tools/browser.py --find   # only report what is found

``tests/test_site.py`` drives the built website with Selenium and a browser of this machine: it
never downloads a browser. Chromium and chromedriver must come from the same release, so they are
taken as a pair, in this order:

1. ``$CHROMIUM`` and ``$CHROMEDRIVER`` when both are set (e.g. a Chrome and chromedriver of your own);
2. Debian's packages ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``);
3. ``chromium``/``chromium-browser``/``google-chrome`` and ``chromedriver`` on the ``PATH``, or in
   ``$CHROMEWEBDRIVER`` (e.g. Homebrew on a Mac, the Chrome and driver preinstalled on GitHub's
   Ubuntu runners).

``make test`` runs this script first. Where nothing is found and ``apt-get`` is there, it installs
the Debian packages (as root, or through passwordless ``sudo``); anywhere else it says what to
install and exits 0, and the website test is skipped with that reason, except in continuous
integration (``CI=true``), where a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The browser, its driver, and a colour emoji font (the status page marks passed chapters with ✅).
PACKAGES = ("chromium", "chromium-driver", "fonts-noto-color-emoji")
HOW_TO_INSTALL = (
    "install Chromium and its driver (Debian/Ubuntu: apt-get install chromium chromium-driver; "
    "macOS: brew install --cask chromium chromedriver) or point $CHROMIUM and $CHROMEDRIVER at a "
    "Chrome and the chromedriver of the same version"
)


class BrowserNotFound(RuntimeError):
    """No Chromium with a matching chromedriver on this machine; the message says how to get one."""


def _executable(path: str | Path | None) -> Path | None:
    if not path:
        return None
    path = Path(path)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def locate() -> tuple[Path, Path]:
    """The (browser, driver) pair to use, or :class:`BrowserNotFound` saying how to install one."""
    chosen = os.environ.get("CHROMIUM"), os.environ.get("CHROMEDRIVER")
    if any(chosen):
        browser, driver = map(_executable, chosen)
        if browser is None or driver is None:
            raise BrowserNotFound(f"$CHROMIUM={chosen[0]!r} and $CHROMEDRIVER={chosen[1]!r} must both be executables")
        return browser, driver
    browser, driver = map(_executable, DEBIAN)
    if browser and driver:
        return browser, driver
    browser = next((Path(p) for p in map(shutil.which, BROWSER_NAMES) if p), None)
    runner_driver = Path(os.environ.get("CHROMEWEBDRIVER") or "/nonexistent") / "chromedriver"
    driver = shutil.which("chromedriver") or _executable(runner_driver)
    if browser and driver:
        return browser, Path(driver)
    raise BrowserNotFound(f"no Chromium with chromedriver found: {HOW_TO_INSTALL}")


def _apt_install() -> bool:
    """Install the Debian packages with apt-get (as root, or with passwordless sudo); True if it ran."""
    if shutil.which("apt-get") is None:
        return False
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            return False
        prefix = ["sudo", "-n"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(PACKAGES)} from the distribution's packages for the website test", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(prefix + command, env=env)
        if done.returncode:
            print(f"`{' '.join(command)}` failed (exit {done.returncode})", file=sys.stderr)
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        browser, driver = locate()
    except BrowserNotFound as missing:
        if "--find" in args or not _apt_install():
            print(f"website test: {missing}; it will be skipped (and fail where CI=true)")
            return 0
        try:
            browser, driver = locate()
        except BrowserNotFound as still_missing:
            print(f"website test: installed {', '.join(PACKAGES)}, but {still_missing}")
            return 0
    print(f"website test: browser {browser}, driver {driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
