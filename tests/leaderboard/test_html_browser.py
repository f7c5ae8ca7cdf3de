"""The leaderboard page in headless Chromium (Debian chromium + chromium-driver, driven over W3C WebDriver).

Checks: no console errors (JS exceptions, console.error, CSP violations, failed loads), every table rendered with
its rows, images decoded, and the sorting JS works (header clicks reorder rows, best first on the first click).
A deliberately broken page must be reported, so the check itself is known to work.
"""

from __future__ import annotations

import pytest

from tests.leaderboard.browser import Chrome, find_browser

CHROME, DRIVER = find_browser()
pytestmark = pytest.mark.skipif(
    CHROME is None or DRIVER is None,
    reason="headless Chromium not installed: run `bash scripts/ensure_system_deps.sh` (Debian packages chromium, "
           "chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    with Chrome(CHROME, DRIVER) as b:
        yield b


ROW_MODELS = "return Array.from(document.querySelectorAll('#table-0 tbody tr')).map(r => r.dataset.model);"
COL_VALUES = ("return Array.from(document.querySelectorAll('#table-0 tbody tr'))"
              ".map(r => parseFloat(r.cells[arguments[0]].dataset.value));")


def test_page_renders_without_console_errors_and_sorts(browser, lb_out):
    page = lb_out["out"] / "index.html"
    browser.logs()  # drop anything from browser start-up
    browser.get(page.as_uri())
    errors = browser.console_errors()
    assert errors == [], errors
    assert browser.execute("return document.documentElement.getAttribute('data-ready');") == "1"
    assert len(browser.find_all("table.lb-table")) == 4
    assert len(browser.find_all("table.lb-table tbody tr")) == 12
    # every embedded image decoded
    sizes = browser.execute("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
    assert len(sizes) == 10 and all(c and w > 0 for c, w in sizes)
    # sorting: PSNR (higher is better) -> first click best first (descending), second click ascending
    headers = browser.execute(
        "return Array.from(document.querySelectorAll('#table-0 thead th')).map(t => t.dataset.metric || '');")
    psnr_col, lpips_col = headers.index("psnr"), headers.index("lpips")
    ths = browser.find_all("#table-0 thead th")
    browser.click(ths[psnr_col])
    v = browser.execute(COL_VALUES, psnr_col)
    assert v == sorted(v, reverse=True) and browser.execute(ROW_MODELS)[0] == "dmdnet (tiny)"
    browser.click(ths[psnr_col])
    v = browser.execute(COL_VALUES, psnr_col)
    assert v == sorted(v) and browser.execute(ROW_MODELS)[0] == "bicubic (tiny)"
    # LPIPS is lower-is-better: first click puts the lowest first
    browser.click(ths[lpips_col])
    v = browser.execute(COL_VALUES, lpips_col)
    assert v == sorted(v)
    assert browser.execute(
        "return document.querySelectorAll('#table-0 thead th')[arguments[0]].getAttribute('aria-sort');",
        lpips_col) == "ascending"
    # text column
    browser.click(ths[0])
    assert browser.execute(ROW_MODELS) == ["asffnet (tiny)", "bicubic (tiny)", "dmdnet (tiny)"]
    assert browser.console_errors() == []


def test_broken_pages_are_detected(browser, tmp_path):
    """The console check must fail on a JS error, a console.error and a blocked external resource."""
    from leaderboard.html import CSP

    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'></head><body>"
                   "<script>document.body.appendChild(document.createElement('p')); notDefinedAnywhere();</script>"
                   "</body></html>")
    browser.logs()
    browser.get(bad.as_uri())
    errors = browser.console_errors()
    assert any("notDefinedAnywhere" in e for e in errors), errors

    ext = tmp_path / "ext.html"
    ext.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
                   f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><link rel='icon' href='data:,'>"
                   "</head><body><img src='http://127.0.0.1:9/x.png'><script>console.error('boom')</script>"
                   "</body></html>")
    browser.get(ext.as_uri())
    errors = browser.console_errors()
    assert any("boom" in e for e in errors), errors
    assert any("Content Security Policy" in e or "x.png" in e for e in errors), errors
