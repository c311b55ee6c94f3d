"""examples/app.py end to end in a real headless Chromium (Selenium): a CFG digit, a plug-and-play
inpainting, a readable error for a bad input, and the next request still answered.

Needs the demo extra (gradio), selenium, and Debian's chromium + chromium-driver (.ci/run installs them);
skipped with the reason when one is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
missing = [name for name, ok in [("gradio", importlib.util.find_spec("gradio")), ("selenium", importlib.util.find_spec("selenium")),
                                 ("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER), ("MNIST", MNIST.exists())] if not ok]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"the browser test needs {', '.join(missing)}")

from test_quickstart import tiny_pipelines  # noqa: E402,F401  (the module-scoped fixture)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHIPPED = os.environ.get("DEMO_PIPELINES") == "shipped"  # the real pipelines, for docs/ screenshots


@pytest.fixture(scope="module")
def app_url(tiny_pipelines, tmp_path_factory):  # noqa: F811
    root = tiny_pipelines
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    log = open(log_path, "w")
    models = [] if SHIPPED else ["--unconditional", str(root / "uncond"), "--conditional", str(root / "cfg"),
                                 "--guide", str(root / "classifier")]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "app.py"), "--port", str(port), *models, "--dataset", str(MNIST),
         "--dps_steps", "5"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited: {log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError(f"the app did not answer in 90 s: {log_path.read_text()[-3000:]}")
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def click_choice(driver, elem_id: str, label: str) -> None:
    """Click the radio button labelled ``label`` inside the component ``elem_id``."""
    from selenium.webdriver.common.by import By

    for option in driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} label"):
        if option.text.strip() == label:
            option.click()
            return
    raise AssertionError(f"no choice {label!r} in #{elem_id}")


def set_number(driver, elem_id: str, value) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value))
    field.send_keys(Keys.TAB)


def wait_for_image(driver, elem_id: str, previous_src: str | None = None, timeout: float = 60):
    """The natural (width, height) of the image shown in ``elem_id`` once a new one has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(d):
        images = d.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        if not images:
            return False
        src = images[0].get_attribute("src")
        size = d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight];", images[0])
        return (src, tuple(size)) if src != previous_src and size[0] > 0 else False

    return WebDriverWait(driver, timeout).until(loaded)


def open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    for tab in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']"):
        if tab.text.strip() == name:
            tab.click()
            return
    raise AssertionError(f"no tab {name!r}")


def screenshot(driver, name: str) -> None:
    """Keep a screenshot for docs/ when DEMO_SCREENSHOTS names a folder."""
    folder = os.environ.get("DEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_cfg_digit_inpainting_and_a_readable_error(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sample_button"))

    # 1. A CFG digit: the class-conditional pipeline (the default), digit 7, 4 samples at 5 steps.
    click_choice(browser, "sample_digit", "7")
    set_number(browser, "sample_steps", 50 if SHIPPED else 5)
    browser.find_element(By.CSS_SELECTOR, "#sample_button").click()
    src, size = wait_for_image(browser, "sample_image")
    # 16 samples of side s in a 4 x 4 grid with 1 px padding, shown 4x: (4 s + 3) * 4 px (140 for the tiny 8 px model).
    side = 28 if SHIPPED else 8
    assert size == ((4 * side + 3) * 4, (4 * side + 3) * 4)
    assert "digit 7" in browser.find_element(By.CSS_SELECTOR, "#sample_text").text
    screenshot(browser, "app_sampling.png")

    # 2. A bad input: 0 steps gives a readable error in the page, no traceback.
    set_number(browser, "sample_steps", 0)
    browser.find_element(By.CSS_SELECTOR, "#sample_button").click()
    WebDriverWait(browser, 30).until(lambda d: "must be a positive integer" in d.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "num_inference_steps must be a positive integer" in body and "Traceback" not in body

    # 3. The server goes on: the next request is answered.
    set_number(browser, "sample_steps", 3)
    browser.find_element(By.CSS_SELECTOR, "#sample_button").click()
    src2, size2 = wait_for_image(browser, "sample_image", previous_src=src)
    assert size2 == size and "3 steps" in browser.find_element(By.CSS_SELECTOR, "#sample_text").text

    # 4. img2img: a stroke drawn on the sketchpad, completed at strength 0.5 (8 completions: a 3 x 3 grid).
    from selenium.webdriver.common.action_chains import ActionChains

    open_tab(browser, "img2img")
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#img2img_input button[aria-label='Brush']"))
    browser.find_element(By.CSS_SELECTOR, "#img2img_input button[aria-label='Brush']").click()
    canvas = browser.find_elements(By.CSS_SELECTOR, "#img2img_input canvas")[-1]
    ActionChains(browser).move_to_element_with_offset(canvas, 0, -60).click_and_hold().move_by_offset(0, 40) \
        .move_by_offset(0, 40).move_by_offset(0, 40).release().perform()
    browser.find_element(By.CSS_SELECTOR, "#img2img_button").click()
    _, size4 = wait_for_image(browser, "img2img_image", timeout=60)
    assert size4 == ((3 * side + 2) * 4, (3 * side + 2) * 4)
    screenshot(browser, "app_img2img.png")

    # 5. Plug-and-play inpainting with the bottom half of test digit 0 hidden, 2 samples (the default batch).
    open_tab(browser, "Plug-and-play")
    click_choice(browser, "pnp_constraint", "inpainting")
    click_choice(browser, "pnp_mask", "bottom half hidden")
    browser.find_element(By.CSS_SELECTOR, "#pnp_button").click()
    _, size3 = wait_for_image(browser, "pnp_image", timeout=120)
    # the observation + 2 samples = 3 images: a 2 x 2 grid, shown 4x.
    assert size3 == ((2 * side + 1) * 4, (2 * side + 1) * 4)
    text = browser.find_element(By.CSS_SELECTOR, "#pnp_text").text
    assert "constraint value" in text and "UNet forward" in text
    screenshot(browser, "app_plug_and_play.png")
