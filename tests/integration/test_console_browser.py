"""The console in headless Chromium: a training run's events arrive live, an image opens,
and the champion's monitoring charts are drawn; no page logs an error in the console.

A data scientist of no particular team signs in: the bracelet training is a public
workflow of the platform, so its run's events are hers to see. Screenshots go to
``test-artifacts/screenshots/`` (README's picture of the console is one of them).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from skiff import keycloak
from skiff.bracelet import demo
from skiff.native.context import Context
from skiff.services import REGISTRY
from tests.integration.browser import console_errors, keycloak_login, wait_for, wait_for_text

pytestmark = pytest.mark.integration

MONITORING_DAG = "model_monitoring"


@pytest.fixture(scope="module", autouse=True)
def console_services() -> None:
    if "notifications" not in REGISTRY:
        pytest.skip("the notification service is not in skiff.services.REGISTRY")


@pytest.fixture(scope="module")
def scientist(stack: Context) -> tuple[str, str]:
    name = f"console-{secrets.token_hex(3)}"
    password = keycloak.create_user(stack.settings, name, role="data-scientist", team="console-tests")
    return name, password


def sign_in(browser: WebDriver, url: str, who: tuple[str, str]) -> None:
    browser.get(url)
    keycloak_login(browser, *who)


def events_on_page(browser: WebDriver) -> int:
    return len(browser.find_elements(By.CSS_SELECTOR, "#events article.event"))


def test_a_training_runs_events_arrive_live_and_an_image_opens(
        stack: Context, browser: WebDriver, scientist: tuple[str, str], shots: Path) -> None:
    public = stack.settings.public_url
    with demo.airflow_client(stack) as api:
        run_id = demo.trigger(api, demo.TRAINING_DAG, {})
    run = f"{demo.TRAINING_DAG}/{run_id}"

    sign_in(browser, f"{public}/runs/{quote(run, safe='/')}", scientist)
    wait_for(browser, "#events")
    wait_for_text(browser, run)
    first = events_on_page(browser)
    # The page is never reloaded from here on: whatever appears came down the stream.
    wait_for(browser, "#events article.event[data-kind='metrics']", timeout=600)
    wait_for(browser, "#events article.event[data-kind='image'] img", timeout=600)
    WebDriverWait(browser, 600).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#events article.event[data-kind='status']")
        and "success" in d.find_elements(
            By.CSS_SELECTOR, "#events article.event[data-kind='status']")[-1].text.lower())
    assert events_on_page(browser) > first, "no event arrived after the page was loaded"
    assert browser.find_element(By.ID, "live").text.strip().lower() == "live"
    # README's picture: a tall window, the first picture of the run's progress in view.
    browser.set_window_size(1400, 1500)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", browser.find_element(
        By.CSS_SELECTOR, "#events article.event[data-kind='image']"))
    browser.save_screenshot(str(shots / "console-run.png"))
    browser.set_window_size(1400, 900)

    # Every image on the page was drawn (a broken link has no natural width) ...
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('#events article.event[data-kind=image] img'))"
        ".map(function (i) { return i.complete ? i.naturalWidth : -1; });")
    assert widths and all(w > 0 for w in widths), widths
    # ... and one opens on its own, full size, when clicked.
    page = browser.current_window_handle
    browser.find_element(By.CSS_SELECTOR, "#events article.event[data-kind='image'] img").click()
    WebDriverWait(browser, 30).until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != page))
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return document.images.length === 1 && document.images[0].naturalWidth > 0;"))
    assert "/events/" in browser.current_url
    browser.close()
    browser.switch_to.window(page)
    assert console_errors(browser) == []

    with demo.airflow_client(stack) as api:
        assert demo.wait_run(api, demo.TRAINING_DAG, run_id, timeout=600) == "success"


def test_the_models_page_charts_the_champions_monitoring(
        stack: Context, browser: WebDriver, scientist: tuple[str, str], shots: Path,
        champion: dict[str, str]) -> None:
    public = stack.settings.public_url
    # One monitoring run of the champion over the last day, judged on whatever was captured.
    end = datetime.now(UTC)
    with demo.airflow_client(stack) as api:
        run_id = demo.trigger(api, MONITORING_DAG, {
            "window_start": (end - timedelta(days=1)).isoformat(), "window_end": end.isoformat(),
            "min_rows": 1})
        assert demo.wait_run(api, MONITORING_DAG, run_id, timeout=600) == "success"

    sign_in(browser, f"{public}/models/{stack.settings.model_name}", scientist)
    wait_for(browser, "#champion")
    assert f"version {champion['version']}" in browser.find_element(By.ID, "champion").text.lower()
    for chart in ("chart-psi", "chart-quality"):
        wait_for(browser, f"#{chart}")
    points = browser.find_elements(By.CSS_SELECTOR, "#chart-psi circle, #chart-psi polyline")
    assert points, "the drift chart has no data point"
    browser.save_screenshot(str(shots / "console-model.png"))

    browser.get(f"{public}/")
    wait_for_text(browser, scientist[0])
    for link in ("JupyterHub", "Airflow", "MLflow", "Runs", "Models", "Projects"):
        assert link.lower() in browser.find_element(By.TAG_NAME, "body").text.lower(), link
    browser.save_screenshot(str(shots / "console-landing.png"))
    assert console_errors(browser) == []
