"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver``
through Selenium, and the waits and the Keycloak login the tests share."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@contextmanager
def chromium() -> Iterator[WebDriver]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(`skiff install --for-tests` installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--ignore-certificate-errors"):
        options.add_argument(arg)
    # The page's console messages, for the tests that a page raises no errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """The SEVERE messages of the browser's console since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def body_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for(driver: WebDriver, css: str, timeout: float = 90) -> None:
    try:
        WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        raise AssertionError(
            f"{css!r} did not appear within {timeout:.0f}s on {driver.current_url}\n"
            f"{body_text(driver)[:800]}") from None


def wait_for_text(driver: WebDriver, text: str, timeout: float = 90) -> None:
    """Wait until the page shows ``text``; on timeout, say where we were and what it showed."""
    try:
        # Redirects replace the page under us: a vanished body is asked for again.
        WebDriverWait(driver, timeout, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(
            lambda d: text.lower() in body_text(d).lower())
    except TimeoutException:
        raise AssertionError(
            f"{text!r} did not appear within {timeout:.0f}s on {driver.current_url}\n"
            f"{body_text(driver)[:800]}") from None


def keycloak_login(driver: WebDriver, user: str, password: str) -> None:
    wait_for(driver, "#username")
    assert "/auth/realms/skiff/" in driver.current_url, driver.current_url
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "kc-login").click()
