"""The report in a real browser with the network off: it loads without a console error, a click on a
map cell shows that cell's images (and no other's), tables sort and filter, and no request leaves
the machine. The report is built from a hand-made run (tests/report_inputs.py), so this takes seconds.
"""

from __future__ import annotations

import base64
import io
import os
import time
from urllib.parse import urlparse

import pytest
from headless_chromium import ensure_installed, offline_driver, requested_urls
from PIL import Image
from report_inputs import SEEDS, image_png, report_inputs

from entmap.core.image_codec import decode_png
from entmap.present.report import write_report

pytestmark = pytest.mark.browser
LOCAL_SCHEMES = {"file", "data", "blob", "about"}


@pytest.fixture(scope="module")
def browser():
    problem = ensure_installed()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    driver = offline_driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """The report with an audit, opened from disk; the requests and console messages of loading it."""
    from selenium.webdriver.support.ui import WebDriverWait

    kwargs = report_inputs(tmp_path_factory.mktemp("report"), audit=True)
    write_report(**kwargs)
    browser.get(kwargs["out_path"].resolve().as_uri())
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements("css selector", "#map-explorer svg"))
    wait.until(lambda d: d.find_elements("css selector", "#audit-strength svg"))
    wait.until(lambda d: len(d.find_elements("css selector", "table.dataTable")) >= 7)  # 5 analysis, cells, checkpoints
    return {"requests": requested_urls(browser), "console": browser.get_log("browser")}


def shown_images(browser) -> list[bytes]:
    images = browser.find_elements("css selector", "#map-explorer image")
    prefix = "data:image/png;base64,"
    hrefs = [image.get_attribute("href") or image.get_attribute("xlink:href") for image in images]
    assert all(href.startswith(prefix) for href in hrefs), [href[:40] for href in hrefs]
    return [base64.b64decode(href.removeprefix(prefix)) for href in hrefs]


def click_cell(browser, model: str, prompt_id: str) -> None:
    from selenium.webdriver import ActionChains

    label = f"model: {model}; prompt: {prompt_id}:"
    cells = [
        cell
        for cell in browser.find_elements("css selector", "#map-explorer path[aria-roledescription]")
        if (cell.get_attribute("aria-label") or "").startswith(label)
    ]
    assert len(cells) == 1, label
    ActionChains(browser).move_to_element(cells[0]).click().perform()


def pixels(png: bytes) -> bytes:
    return decode_png(png).tobytes()


def expected_pixels(model: str, prompt_id: str) -> list[bytes]:
    return sorted(pixels(image_png(source, prompt_id, seed)) for source in ("base", model) for seed in SEEDS)


def test_loads_offline_without_console_errors(page):
    errors = [entry for entry in page["console"] if entry["level"] == "SEVERE"]
    assert not errors, errors
    assert page["requests"], "the performance log recorded no request (not even the page's own)"
    remote = [url for url in page["requests"] if urlparse(url).scheme not in LOCAL_SCHEMES]
    assert not remote, remote


def test_clicking_a_cell_shows_its_images_of_every_seed(browser, page):
    from selenium.webdriver.support.ui import WebDriverWait

    assert shown_images(browser) == []  # nothing selected yet
    for model, prompt_id in (("face1/lora", "p001"), ("bands1/cd", "p002")):
        started = time.perf_counter()
        click_cell(browser, model, prompt_id)
        want = expected_pixels(model, prompt_id)
        WebDriverWait(browser, 10).until(lambda d, want=want: sorted(pixels(p) for p in shown_images(d)) == want)
        shown = shown_images(browser)
        assert len(shown) == 2 * len(SEEDS), time.perf_counter() - started
        texts = []
        for png in shown:
            with Image.open(io.BytesIO(png)) as image:
                texts.append(image.text["parameters"])
        assert sum(f"Entmap model: {model}" in text for text in texts) == len(SEEDS)
        assert sorted(int(text.split("Seed: ")[1].split(",")[0]) for text in texts) == sorted(SEEDS * 2)
        scores = browser.find_element("css selector", "#map-explorer").text
        assert f"{model} on {prompt_id}:" in scores and "seed 1: d_sem" in scores
    remote = [url for url in requested_urls(browser) if urlparse(url).scheme not in LOCAL_SCHEMES]
    assert not remote, remote


def test_the_cells_table_filters_and_sorts(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    tables = [
        table
        for table in browser.find_elements(By.CSS_SELECTOR, "table.dataTable")
        if "prompt_id" in [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    ]
    assert len(tables) == 1
    table = tables[0]
    container = table.find_element(By.XPATH, "ancestor::div[contains(@class, 'dt-container')]")
    rows = lambda: [row.text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]  # noqa: E731
    search = container.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys("bands1")
    time.sleep(0.3)
    assert len(rows()) == 3 and all("bands1/cd" in row for row in rows())
    search.clear()
    search.send_keys(Keys.BACK_SPACE)  # an input event: the filter is lifted
    time.sleep(0.3)
    assert len(rows()) == 6
    headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    column = headers.index("e_sem")
    table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
    time.sleep(0.3)
    values = [
        float(row.find_elements(By.CSS_SELECTOR, "td")[column].text)
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert len(values) == 6 and values == sorted(values), values
    table.find_elements(By.CSS_SELECTOR, "thead th")[column].click()
    time.sleep(0.3)
    values = [
        float(row.find_elements(By.CSS_SELECTOR, "td")[column].text)
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert values == sorted(values, reverse=True) and values[0] == 0.3
