"""
Drives headless Chromium (Debian's ``chromium`` and ``chromium-driver``) through the relay's
live page and reports what it saw as one JSON object on standard output.

Run by tests/test_web_browser.py in a separate process: Selenium's calls block, and the
test's reactor must keep serving the page meanwhile. Every wait is bounded, and the whole
run is cut off by an alarm after ``--budget`` seconds.

    python tests/web_browser_driver.py URL SCREENSHOT.png [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Reads every data cell of the page: {sub|item|key|field: text}.
READ_CELLS = """
const out = {};
for (const td of document.querySelectorAll("td[data-field]")) {
  const d = td.dataset;
  out[[d.sub, d.item, d.key || "", d.field].join("|")] = td.textContent;
}
return out;
"""


class OutOfTime(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise OutOfTime("the browser run took longer than its budget")


def run(url: str, screenshot: str, budget: float) -> dict[str, Any]:
    # Never let Selenium Manager look for (or download) a driver or a browser.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    report: dict[str, Any] = {"url": url}
    deadline = time.monotonic() + budget

    def left(at_most: float) -> float:
        return max(0.5, min(at_most, deadline - time.monotonic() - 5))

    with tempfile.TemporaryDirectory(prefix="txls-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-extensions",
            "--disable-default-apps", "--window-size=1100,820",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(left(20))
            driver.set_script_timeout(left(10))
            driver.get(url)
            WebDriverWait(driver, left(20), poll_frequency=0.1).until(
                lambda d: d.execute_script(
                    "return document.body.dataset.ready === 'yes' && "
                    "document.getElementById('status').textContent.startsWith('CONNECTED')"
                    " && document.querySelectorAll('td[data-field]:not(.null)').length > 0"))
            report["title"] = driver.title
            first: dict[str, str] = driver.execute_script(READ_CELLS)
            report["cells"] = len(first)
            report["filled_cells"] = sum(1 for v in first.values() if v)
            changed: set[str] = set()
            flashed = 0
            until = time.monotonic() + left(15)
            while time.monotonic() < until:
                time.sleep(0.2)
                now: dict[str, str] = driver.execute_script(READ_CELLS)
                changed |= {k for k, v in now.items() if k in first and first[k] != v}
                flashed = max(flashed, driver.execute_script(
                    "return document.querySelectorAll('td.flash').length"))
                if len(changed) >= 8 and flashed:
                    break
            report["changed"] = sorted(changed)
            report["flashed"] = flashed
            report["status"] = driver.execute_script(
                "return document.getElementById('status').textContent")
            report["relay"] = driver.execute_script(
                "return document.getElementById('relay').textContent")
            report["session"] = driver.execute_script(
                "return document.getElementById('session').textContent")
            report["sections"] = driver.execute_script(
                "return document.querySelectorAll('section[data-sub]').length")
            # Let the portfolio fill a little before the picture, within the budget.
            try:
                WebDriverWait(driver, left(5), poll_frequency=0.2).until(
                    lambda d: d.execute_script(
                        "return document.querySelectorAll("
                        "'section[data-sub=\"1\"] tbody tr:not(.gone)').length >= 3"))
            except TimeoutException:
                pass
            report["portfolio_rows"] = driver.execute_script(
                "return document.querySelectorAll('section[data-sub=\"1\"] tbody tr').length")
            driver.save_screenshot(screenshot)
            report["screenshot"] = screenshot
            report["console"] = [
                entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        finally:
            driver.quit()
    return report


#: What the first-hour scenario reads of the page (issue 19).
READ_LOOK = """
const main = document.getElementById("tables");
const rows = document.querySelectorAll('section[data-sub="1"] tbody tr');
const row = document.querySelector("section tbody tr");
const boxes = [...document.querySelectorAll(".scroll")];
const body = getComputedStyle(document.body);
return {
  distinct_rows: rows.length,
  distinct_values: [...rows].map((tr) => tr.querySelector("td[data-field]").textContent),
  stale: main.classList.contains("stale"),
  row_opacity: row ? parseFloat(getComputedStyle(row).opacity) : null,
  page_overflows: document.documentElement.scrollWidth > window.innerWidth,
  box_scrolls: boxes.some((b) => b.scrollWidth > b.clientWidth),
  color: body.color, background: body.backgroundColor,
};
"""


def first_hour(url: str, outdir: str, budget: float) -> dict[str, Any]:
    """
    The relay page as issue 19 asks: a DISTINCT table's recent events, dark mode, 420 px
    wide, then grey rows once the test (told by a ``DOWN?`` line) cuts the upstream.
    """
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    report: dict[str, Any] = {}
    deadline = time.monotonic() + budget

    def left(at_most: float) -> float:
        return max(0.5, min(at_most, deadline - time.monotonic() - 5))

    def shot(name: str) -> dict[str, Any]:
        time.sleep(1.2)  # let the flash animations end
        driver.save_screenshot(os.path.join(outdir, f"relay-{name}.png"))
        look: dict[str, Any] = driver.execute_script(READ_LOOK)
        return look

    def media(scheme: str) -> None:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]})

    with tempfile.TemporaryDirectory(prefix="txls-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                    "--window-size=1000,700", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(left(20))
            media("light")
            driver.get(url)
            WebDriverWait(driver, left(20), poll_frequency=0.1).until(
                lambda d: d.execute_script(
                    "return document.getElementById('status').textContent"
                    ".startsWith('CONNECTED') && document.querySelectorAll("
                    "'section[data-sub=\"1\"] tbody tr').length >= 5"))
            report["normal"] = shot("normal")
            media("dark")
            report["dark"] = shot("dark")
            media("light")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": 420, "height": 700, "deviceScaleFactor": 1, "mobile": True})
            report["narrow"] = shot("420px")
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            print("DOWN?", flush=True)  # the test now cuts the upstream
            WebDriverWait(driver, left(20), poll_frequency=0.1).until(
                lambda d: d.execute_script(
                    "return document.getElementById('tables').classList.contains('stale')"))
            report["down"] = shot("upstream-down")
            report["console"] = [
                entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        finally:
            driver.quit()
    return report


def rows(url: str, budget: float) -> dict[str, Any]:
    """The last cell of every table row once the page has loaded (no screenshot)."""
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="txls-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_page_load_timeout(min(20, budget))
            driver.get(url)
            WebDriverWait(driver, min(20, budget), poll_frequency=0.1).until(
                lambda d: d.execute_script("return document.body.dataset.ready === 'yes'"))
            cells = driver.execute_script(
                "return [...document.querySelectorAll('section tbody tr')]"
                ".map(tr => tr.lastElementChild.textContent)")
        finally:
            driver.quit()
    return {"url": url, "rows": cells}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("screenshot", help="a PNG path, or a directory with --first-hour")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--first-hour", action="store_true")
    parser.add_argument("--rows", action="store_true", help="report the rows on load")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.budget) + 1)
    try:
        if args.rows:
            report = rows(args.url, args.budget)
        elif args.first_hour:
            report = first_hour(args.url, args.screenshot, args.budget)
        else:
            report = run(args.url, args.screenshot, args.budget)
    except Exception as e:  # reported to the test, which fails with it
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    finally:
        signal.alarm(0)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
