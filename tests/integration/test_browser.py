"""Browser tests: one Keycloak login opens JupyterLab, Elyra's editor, Airflow and MLflow.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through Selenium,
everything through the one public address. A screenshot of each page is kept in
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from skiff import keycloak
from skiff.native.context import Context
from tests.integration.browser import keycloak_login, wait_for, wait_for_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scientist(stack: Context) -> tuple[str, str]:
    name = f"ds-{secrets.token_hex(3)}"
    password = keycloak.create_user(stack.settings, name, role="data-scientist", team="browser-tests")
    return name, password


def test_one_login_opens_jupyterlab_elyra_airflow_and_mlflow(
        stack: Context, browser: WebDriver, scientist: tuple[str, str], shots: Path) -> None:
    public = stack.settings.public_url
    user, password = scientist

    browser.get(f"{public}/jupyter/hub/login")
    # OAuthenticator's login page has one button; it may also redirect at once.
    if not browser.current_url.startswith(f"{public}/auth/"):
        wait_for(browser, "a.btn-jupyter, a[href*='oauth_login']")
        browser.find_element(By.CSS_SELECTOR, "a.btn-jupyter, a[href*='oauth_login']").click()
    keycloak_login(browser, user, password)
    # Spawning the single-user server takes a while on two cores.
    wait_for(browser, ".jp-Launcher", timeout=240)
    assert f"/jupyter/user/{user}/lab" in browser.current_url
    browser.save_screenshot(str(shots / "jupyterlab.png"))

    card = "[title*='Pipeline Editor'], .jp-LauncherCard[data-category='Elyra']"
    wait_for(browser, card)
    browser.find_element(By.CSS_SELECTOR, card).click()
    # The empty canvas of Elyra's editor says how to start.
    wait_for_text(browser, "Start your new pipeline")
    browser.save_screenshot(str(shots / "elyra-pipeline-editor.png"))

    # Same Keycloak session: no second password for Airflow or MLflow.
    browser.get(f"{public}/airflow/")
    if "/auth/realms/skiff/" in browser.current_url and browser.find_elements(By.ID, "username"):
        pytest.fail("Airflow asked for the password again: the Keycloak session was not reused")
    wait_for_text(browser, "Dags")
    assert browser.current_url.startswith(f"{public}/airflow"), browser.current_url
    browser.save_screenshot(str(shots / "airflow.png"))

    browser.get(f"{public}/mlflow/")
    wait_for_text(browser, "Experiments")
    assert browser.current_url.startswith(f"{public}/mlflow"), browser.current_url
    browser.save_screenshot(str(shots / "mlflow.png"))

    browser.get(f"{public}/")
    wait_for_text(browser, user)
    page = browser.find_element(By.TAG_NAME, "body").text
    for service in ("JupyterHub", "Airflow", "MLflow"):
        assert service in page, f"landing page does not list {service}"
    browser.save_screenshot(str(shots / "landing.png"))


def test_logging_out_of_keycloak_ends_the_mlflow_session(
        stack: Context, browser: WebDriver, scientist: tuple[str, str], shots: Path) -> None:
    public = stack.settings.public_url
    user, password = scientist
    browser.get(f"{public}/mlflow/")
    keycloak_login(browser, user, password)
    wait_for_text(browser, "Experiments")

    browser.get(f"{public}/oauth2/logout")
    # Keycloak may ask to confirm the logout.
    confirm = browser.find_elements(By.ID, "kc-logout")
    if confirm:
        confirm[0].click()
    browser.get(f"{public}/mlflow/")
    wait_for(browser, "#username")
    assert "/auth/realms/skiff/" in browser.current_url
    browser.save_screenshot(str(shots / "after-logout.png"))
