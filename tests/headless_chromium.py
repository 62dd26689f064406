"""Chromium from Debian's packages, driven by Selenium, for the report's browser test.

:func:`ensure_installed` installs ``chromium`` and ``chromium-driver`` with apt-get when they are
missing (as root; tests/slurm_cluster.py does the same for SLURM); :func:`offline_driver` starts a
headless Chromium that cannot reach any network: every host name resolves to nothing, every
request goes to a proxy on a closed port, and the DevTools protocol switches the network off.
Its performance log records every request the page made, for :func:`requested_urls`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

DEBIAN_PACKAGES = ("chromium", "chromium-driver")
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"


def ensure_installed() -> str | None:
    """Install Chromium and its driver from Debian's packages if missing (root only); None when ready."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev])"
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "Chromium is not installed and this process cannot apt-get install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return f"{' '.join(command)} failed: {result.stderr[-500:]}"
    return None


def offline_driver():
    """A headless Chromium with no network, logging the console and every request."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",  # the discard port: nothing listens there
        "--proxy-bypass-list=<-loopback>",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which(CHROMEDRIVER)))
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    return driver


def requested_urls(driver) -> list[str]:
    """Every URL the browser requested since the last call (DevTools Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
