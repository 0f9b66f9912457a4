"""A real browser on the real app: Debian's chromium, headless, driven by Playwright for Python.

Opens `python app.py`, visits every tab, uses it the way a person would (a tiny CPU run, a short LR range test,
an evaluation, an example image and a bad upload), checks that each plot is drawn by plotly in the page, and
saves a screenshot of every tab to $SCREENSHOT_DIR (default: this test's tmp dir).

Skipped, saying why, only off CI when /usr/bin/chromium or Playwright is missing; on CI (env CI set) a missing
browser fails the test: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from lab.data import CLASSES

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} — on CI the browser test must run (.ci/run installs Debian's chromium)")
    pytest.skip(why)


@pytest.fixture
def page(launch_app, runs_root):
    _need(Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None,
          f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright Python package is not installed (pip install -r requirements.txt)")
    url = launch_app(runs_root)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(url, wait_until="domcontentloaded")
        pg.wait_for_selector("button[role=tab]")
        yield pg
        browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_function("name => [...document.querySelectorAll('button[role=tab]')]"
                           ".some(b => b.textContent.trim() === name && b.getAttribute('aria-selected') === 'true')",
                           arg=name)


def plot_drawn(page, elem_id: str, trace_selector: str = ".scatterlayer .trace", at_least: int = 1) -> int:
    """Wait until plotly has drawn the figure of gr.Plot #elem_id with at least `at_least` traces; their number."""
    page.wait_for_selector(f"#{elem_id} .js-plotly-plot .main-svg", state="visible")
    sel = f"#{elem_id} {trace_selector}"
    page.wait_for_function("([s, n]) => document.querySelectorAll(s).length >= n", arg=[sel, at_least])
    return page.locator(sel).count()


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, pattern: str) -> str:
    page.wait_for_function("([id, p]) => new RegExp(p).test(document.getElementById(id)?.innerText || '')",
                           arg=[elem_id, pattern])
    return text_of(page, elem_id)


def set_number(page, elem_id: str, value) -> None:
    """Type into a gr.Number, or the number box of a gr.Slider, and commit it as a person would."""
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def image_loaded(page, selector: str) -> None:
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0 }",
                           arg=selector)


def test_every_tab_in_a_real_browser(page, shots, tmp_path):
    # 1. Augment: the grid of originals and augmented draws; "New sample" draws other images
    open_tab(page, "Augment")
    image_loaded(page, "#augment-grid img")
    assert "Pipeline: pad 4 px (reflect)" in wait_text(page, "augment-caption", "Pipeline")
    first = page.locator("#augment-grid img").get_attribute("src")
    page.click("#augment-new")
    page.wait_for_function("s => document.querySelector('#augment-grid img')?.getAttribute('src') !== s", arg=first)
    image_loaded(page, "#augment-grid img")
    page.screenshot(path=shots / "1-augment.png", full_page=True)

    # 2. LR range test: a 10-iteration test as the background job; the curve, the suggestions, "use these"
    open_tab(page, "LR range test")
    plot_drawn(page, "lr-range-plot", ".main-svg")  # the empty plot before any test
    set_number(page, "lr-iters", 10)
    page.click("#lr-run")
    wait_text(page, "lr-message", "Range test started at")
    status = wait_text(page, "lr-status", r"Done|Stopped|Failed")
    assert "Done" in status, status
    assert plot_drawn(page, "lr-range-plot", at_least=2) >= 2  # the curve and the suggestion markers
    suggested = wait_text(page, "lr-suggestions", "Suggested LRMAX")
    page.click("#lr-use")
    used = wait_text(page, "lr-message", "One Cycle tab set to LRMAX")
    max_lr = float(re.search(r"LRMAX ([0-9.e+-]+)", used).group(1))
    assert f"LRMAX {used.split('LRMAX ')[1].split(',')[0]}" in suggested.replace("Suggested ", "")
    page.screenshot(path=shots / "2-lr-range-test.png", full_page=True)

    # 3. One Cycle: the preview and the zig-zag; the preview follows the controls
    open_tab(page, "One Cycle")
    assert float(page.locator("#oc-max-lr input").input_value()) == pytest.approx(max_lr, rel=5e-3)
    plot_drawn(page, "one-cycle-plot", at_least=2)  # LR and momentum/β1
    plot_drawn(page, "zigzag-plot")
    set_number(page, "oc-max-lr", 0.01)  # a safe LR for the run below, whatever 10 iterations suggested
    set_number(page, "oc-min-lr", 0.0004)
    set_number(page, "oc-epochs", 2)
    set_number(page, "oc-batch", 64)
    # wait for the last change to land (the summary follows each control in turn)
    summary = wait_text(page, "oc-summary", r"2 epochs × \d+ steps \([0-9,]+ images / batch 64\)")
    assert "LRMAX 0.01" in summary and "batch 64" in summary
    page.screenshot(path=shots / "3-one-cycle.png", full_page=True)

    # 4. Train: a tiny CPU run, live curves, the epoch table, the runs overlay, the model summary
    open_tab(page, "Train")
    plot_drawn(page, "train-plot", ".main-svg")
    set_number(page, "train-width", 0.125)
    set_number(page, "train-subset", 256)
    set_number(page, "train-test-subset", 128)
    page.click("#train-start")
    started = wait_text(page, "train-message", "Run started at|busy|⚠")
    assert "Run started at" in started and "2 epochs, batch 64, width 0.125, 256 training images" in started
    status = wait_text(page, "train-status", r"\b(Done|Stopped|Failed|Diverged)\b")
    assert "Done" in status and "images/s" in status, status
    assert plot_drawn(page, "train-plot", at_least=5) >= 5  # step loss, LR, train/test loss, train/test acc
    page.wait_for_function("Number(document.querySelector('#train-epochs [role=grid]')"
                           "?.getAttribute('aria-rowcount')) >= 3")  # the header and one row per epoch
    assert plot_drawn(page, "runs-overlay-plot", at_least=2) >= 2
    page.get_by_text("Model summary").click()
    page.get_by_role("button", name="Show the layer table for this width").click()
    page.get_by_text(re.compile(r"parameters at width 0\.125")).wait_for()
    page.screenshot(path=shots / "4-train.png", full_page=True)

    # 5. Insights: evaluate the newest checkpoint; confusion matrix, per-class bars, Grad-CAM gallery
    open_tab(page, "Insights")
    page.click("#insights-evaluate")
    summary = wait_text(page, "insights-summary", "Test accuracy|⚠")
    assert "Test accuracy" in summary, summary
    plot_drawn(page, "confusion-plot", ".heatmaplayer .hm")
    assert plot_drawn(page, "per-class-plot", ".barlayer .point", at_least=10) == 10
    page.wait_for_function("document.querySelectorAll('#mistakes-gallery img').length >= 1")
    image_loaded(page, "#mistakes-gallery img")
    page.screenshot(path=shots / "5-insights.png", full_page=True)

    # 6. Classify: an example image → the 32×32 view, top-k label, Grad-CAM; then a file that is no image
    open_tab(page, "Classify")
    page.locator("#classify-examples button.gallery-item").first.click()
    message = wait_text(page, "classify-message", "Prediction|⚠")
    assert "Prediction" in message, message
    image_loaded(page, "#classify-seen img")
    image_loaded(page, "#classify-cam img")
    label = text_of(page, "classify-label")
    assert any(c in label for c in CLASSES), label
    page.screenshot(path=shots / "6-classify.png", full_page=True)
    bad = tmp_path / "not-an-image.png"
    bad.write_text("this is a text file")
    page.locator("#classify-input").get_by_role("button", name=re.compile("clear|remove", re.I)).first.click()
    page.locator("#classify-input input[type=file]").set_input_files(str(bad))
    assert "not an image" in wait_text(page, "classify-message", "not an image")
    page.screenshot(path=shots / "7-classify-bad-file.png", full_page=True)

    for name in ("1-augment", "2-lr-range-test", "3-one-cycle", "4-train", "5-insights", "6-classify"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name


def test_bad_input_and_a_second_session_in_a_real_browser(launch_app, runs_root, shots):
    """A shared server (LAB_PUBLIC=1) used by two people: bad values get one line saying what to fix (never a bare
    "Error"), the second person sees the first one's run and when it ends, and cannot stop it; the message under
    Start clears once the run is over."""
    _need(Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None, f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright Python package is not installed (pip install -r requirements.txt)")
    url = launch_app(runs_root, env={"LAB_PUBLIC": "1"})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        alice, bob = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
        for pg in (alice, bob):
            pg.set_default_timeout(TIMEOUT_MS)
            pg.goto(url, wait_until="domcontentloaded")
            pg.wait_for_selector("button[role=tab]")

        # Augment: a negative seed
        open_tab(alice, "Augment")
        image_loaded(alice, "#augment-grid img")
        set_number(alice, "augment-seed", -5)
        caption = wait_text(alice, "augment-caption", "seed must")
        assert "seed must be a whole number from 0 to" in caption and "Error" not in caption
        alice.screenshot(path=shots / "b1-augment-negative-seed.png", full_page=True)

        # LR range test: start LR above end LR, then an empty start LR
        open_tab(alice, "LR range test")
        set_number(alice, "lr-start-lr", 1)
        set_number(alice, "lr-end-lr", 0.1)
        alice.click("#lr-run")
        assert "start LR < end LR" in wait_text(alice, "lr-message", "⚠")
        set_number(alice, "lr-start-lr", "")
        alice.click("#lr-run")
        assert "start LR is empty" in wait_text(alice, "lr-message", "empty")
        alice.screenshot(path=shots / "b2-lr-bad-range.png", full_page=True)

        # Train: a negative seed, then a run over the shared server's width cap, then a run long enough (20 epochs
        # of 16 small steps) for Bob to find it running
        open_tab(alice, "One Cycle")
        set_number(alice, "oc-epochs", 20)
        set_number(alice, "oc-batch", 16)
        wait_text(alice, "oc-summary", r"20 epochs × \d+ steps \([0-9,]+ images / batch 16\)")
        open_tab(alice, "Train")
        set_number(alice, "train-width", 0.125)
        set_number(alice, "train-subset", 256)
        set_number(alice, "train-test-subset", 64)
        set_number(alice, "train-seed", -1)
        alice.click("#train-start")
        assert "seed must be a whole number from 0 to" in wait_text(alice, "train-message", "⚠")
        set_number(alice, "train-seed", 0)
        set_number(alice, "train-width", 2)
        alice.click("#train-start")
        assert "above this shared server's cap" in wait_text(alice, "train-message", "cap")
        alice.screenshot(path=shots / "b3-train-over-cap.png", full_page=True)
        set_number(alice, "train-width", 0.125)
        alice.click("#train-start")
        wait_text(alice, "train-message", "Run started at")  # (the cap's line stays until the answer comes)

        # Bob sees the run and when it should end, and cannot stop it
        open_tab(bob, "Train")
        status = wait_text(bob, "train-status", r"ends at about \d\d:\d\d:\d\d")
        assert "Running" in status
        bob.click("#train-stop")
        assert "another browser session" in wait_text(bob, "train-message", "⚠")
        bob.screenshot(path=shots / "b4-second-session-stop-refused.png", full_page=True)

        # Alice stops it; her "stopping…" line goes once the run has ended
        alice.click("#train-stop")
        wait_text(alice, "train-message", "stopping")
        wait_text(alice, "train-status", r"\b(Stopped|Done)\b")
        alice.wait_for_function("document.getElementById('train-message').innerText.trim() === ''")
        alice.screenshot(path=shots / "b5-stopped-message-cleared.png", full_page=True)
        browser.close()
