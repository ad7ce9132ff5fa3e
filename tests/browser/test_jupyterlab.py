"""The course as students meet it: JupyterLab in a real (headless) browser.

Opens notebooks from a temporary copy of notebooks/, runs all cells through
JupyterLab's Run menu, and checks that no cell shows an error, that widgets
render and respond, and that check() shows its verdict. Screenshots are saved
under .ci-artifacts/screenshots (kept out of git).
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from coursekit.viz.quiz import load_questions
from tests.browser.lab import copy_notebooks, jupyter_lab

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / ".ci-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
ALL_RUN = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const s = w && w.sessionContext && w.sessionContext.session;
  if (!s || !s.kernel || s.kernel.status !== 'idle' || !w.content || !w.content.model) return false;
  const cells = [...w.content.model.cells].filter(c => c.type === 'code');
  return cells.length > 0 && cells.every(c => c.executionCount !== null);
}"""
NO_COUNTS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return [...w.content.model.cells].every(c => c.type !== 'code' || c.executionCount === null);
}"""
# What a widget shows when no widget manager rendered it: its plain-text repr.
WIDGET_FALLBACK = re.compile(
    r"^(VBox|HBox|Float\w*Slider|IntSlider|Button|Output)\(|Loading widget"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    nbdir = copy_notebooks(ROOT / "notebooks", work / "notebooks")
    with jupyter_lab(nbdir, work / "jupyter") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()
    print(f"\nscreenshots: {SHOTS}")


def menu(page, top: str, entry: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{entry}$")).click()


def open_and_run(browser, lab, name: str):
    base, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # A workspace of its own: otherwise JupyterLab reopens the previous test's notebook too,
    # and the menus might act on that one.
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    # Through the UI. First Edit -> Clear Outputs of All Cells: the stored outputs (and their
    # execution counts) must not be mistaken for fresh ones. Then Run -> Run All Cells.
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(NO_COUNTS, timeout=30_000)
    menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_function(ALL_RUN, timeout=300_000, polling=500)
    finally:
        page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"), full_page=True)
    return page


def assert_no_errors(page, name):
    outputs = page.locator(".jp-OutputArea-output")
    texts = []
    for i in range(outputs.count()):
        out = outputs.nth(i)
        mime = out.get_attribute("data-mime-type") or ""
        text = out.inner_text()
        texts.append(text)
        assert not ("stderr" in mime and re.search(r"Traceback|\w+Error\b", text)), (
            f"{name}: a cell shows an error:\n{text[:1500]}"
        )
        assert not WIDGET_FALLBACK.search(text.strip()), (
            f"{name}: widget not rendered: {text[:200]}"
        )
    return texts


def choose(page, text: str) -> None:
    """Press the letter button of the first quiz choice that shows ``text``."""
    label = page.locator(".jp-OutputArea-output .coursekit-quiz-choice", has_text=text).first
    label.locator("xpath=..").locator(".widget-toggle-button").first.click()


def test_setup_notebook_runs_and_check_renders(browser, lab):
    page = open_and_run(browser, lab, "00_setup.ipynb")
    texts = assert_no_errors(page, "00_setup")
    verdicts = [t for t in texts if re.search(r"\b(PASS|FAIL)\b", t)]
    assert any("FAIL" in t for t in verdicts) and any("PASS" in t for t in verdicts), verdicts
    # check() renders as HTML (green/red), not as a plain-text repr.
    assert page.locator(".jp-RenderedHTML", has_text="PASS").count() >= 1

    # The quiz is a live widget: answer question 1 correctly and press Check.
    choose(page, "(N, H)")
    panel = page.locator(".jp-OutputArea-output .widget-button", has_text="Check").first
    panel.click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(e => /Correct/.test(e.textContent))",
        timeout=20_000,
    )
    page.screenshot(path=str(SHOTS / "00_setup_quiz.png"), full_page=False)
    page.close()


def _lesson_with_slider() -> str:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if "learning_rate_explorer(" in path.read_text():
            return path.name
    pytest.fail("no lesson uses learning_rate_explorer")


def test_learning_rate_slider_redraws(browser, lab):
    name = _lesson_with_slider()
    page = open_and_run(browser, lab, name)
    assert_no_errors(page, name)
    slider = page.locator(".jp-OutputArea-output .widget-slider").first
    slider.scroll_into_view_if_needed()
    area = slider.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')]").first
    before = area.locator("img").first.get_attribute("src")
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    handle.focus()
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([el, src]) => { const img = el.querySelector('img'); return img && img.src !== src; }",
        arg=[area.element_handle(), before],
        timeout=30_000,
    )
    page.wait_for_function(KERNEL_IDLE, timeout=30_000)  # the last redraw has finished
    page.wait_for_timeout(500)
    assert_no_errors(page, name)
    page.screenshot(path=str(SHOTS / f"{Path(name).stem}_slider.png"), full_page=False)
    page.close()


# Lesson 04's questions have math in their choices: e.g. $dY\\,W^\\top$, the right answer to 2.
QUIZ_WITH_MATH = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "quiz",
            "metadata": {},
            "outputs": [],
            "source": 'from coursekit.viz import quiz\n\nquiz("04")',
        }
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
NO_DOLLAR_LEFT = """(selector) => {
  const els = [...document.querySelectorAll(selector)];
  return els.length > 0 && els.every(e => !e.innerText.includes('$'));
}"""


def test_quiz_renders_math_in_prompts_and_choices(browser, lab):
    base, token = lab
    name = "quiz_math.ipynb"
    request = urllib.request.Request(
        f"{base}/api/contents/{name}?token={token}",
        data=json.dumps({"type": "notebook", "content": QUIZ_WITH_MATH}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=30):
        pass
    page = open_and_run(browser, lab, name)
    assert_no_errors(page, name)
    choices = page.locator(".jp-OutputArea-output .coursekit-quiz-choice")
    sources = [c for q in load_questions("04") for c in q.choices]
    assert choices.count() == len(sources) and any("$" in c for c in sources)
    # MathJax typesets every $...$: the text shown keeps no dollar sign, in choices and prompts.
    for selector in (".coursekit-quiz-choice", ".coursekit-quiz-prompt"):
        try:
            page.wait_for_function(NO_DOLLAR_LEFT, arg=selector, timeout=60_000)
        except playwright.Error:
            shown = page.locator(f".jp-OutputArea-output {selector}").all_inner_texts()
            pytest.fail(f"math not typeset in {selector}: {[t for t in shown if '$' in t]}")
    texts = [choices.nth(i).inner_text() for i in range(choices.count())]
    assert not [t for t in texts if "$" in t], texts
    typeset = [i for i, c in enumerate(sources) if "$" in c]
    for i in typeset:
        assert choices.nth(i).locator("mjx-container, .MathJax").count() >= 1, (
            f"choice {sources[i]!r} shows {texts[i]!r} without typeset math"
        )

    # Answer question 2 with its math choice (c), check, and open the worked answer.
    prompts = page.locator(".jp-OutputArea-output .coursekit-quiz-prompt")
    question = prompts.nth(1).locator("xpath=..")
    question.locator(".widget-toggle-button", has_text=re.compile("^c$")).click()
    question.locator(".widget-button", has_text="Check").click()
    question.get_by_text("Correct.").wait_for(timeout=20_000)
    question.locator(".widget-button", has_text="Show worked answer").click()
    worked = question.locator(".jp-RenderedMarkdown").first
    worked.wait_for(timeout=20_000)
    page.wait_for_function(
        "(el) => el.querySelector('mjx-container, .MathJax') && !el.innerText.includes('$')",
        arg=worked.element_handle(),
        timeout=60_000,
    )
    page.screenshot(path=str(SHOTS / "quiz_math.png"), full_page=True)
    page.close()
