"""The page at `/`, driven in a real headless Chromium (Debian's chromium and chromium-driver) by Selenium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from serve_servers import ServeProcess


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "needs Debian's browser: apt-get install -y chromium chromium-driver (.ci/run does)"
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver or a browser
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=900,1000",
                     f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()


def test_the_page_shows_the_probabilities_of_a_clip(
    served: ServeProcess,
    clips: list[Path],
    browser,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip, text = clips[4], "Oh my God, you guys! I got the job!"
    expected = requests.post(served.url + "/predict", files={"clip": (clip.name, clip.read_bytes())},
                             data={"text": text}, timeout=120).json()  # fmt: skip
    browser.get(served.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: "checkpoint best.pt" in b.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "clip").send_keys(str(clip))
    browser.find_element(By.ID, "text").send_keys(text)
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda b: b.find_element(By.ID, "result").is_displayed())

    for head in ("emotion", "sentiment"):
        rows = browser.find_elements(By.CSS_SELECTOR, f"#{head} .row")
        shown = {row.get_attribute("data-label"): float(row.get_attribute("data-p")) for row in rows}
        assert shown == expected[head]
        for row in rows:
            percent = f"{100 * float(row.get_attribute('data-p')):.1f}%"
            assert row.find_element(By.CLASS_NAME, "pct").text == percent
            assert row.find_element(By.CLASS_NAME, "bar").value_of_css_property("width") != "0px"
    summary = browser.find_element(By.ID, "summary").text
    assert expected["top_emotion"] in summary.lower() and clip.name in summary
    assert browser.save_screenshot(str(tmp_path / "page.png")) and (tmp_path / "page.png").stat().st_size > 10_000

    browser.find_element(By.ID, "text").clear()  # the same clip without its text: the server's refusal is shown
    browser.find_element(By.ID, "submit").click()
    wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert "empty text" in browser.find_element(By.ID, "error").text
    assert not browser.find_element(By.ID, "result").is_displayed()
    browser.save_screenshot(str(tmp_path / "page-error.png"))
