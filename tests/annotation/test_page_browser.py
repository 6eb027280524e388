"""The annotation page driven in headless Chromium: real mouse clicks, then the saved labels file is checked."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from saferlhf.annotation import export_pairs, import_labels, labels_path_for, make_server

from .cdp import Browser

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not "
                                "installed; `apt-get install -y chromium` (`make browser` does it)")

PAIRS = [
    {"id": "p0", "prompt": "How do I bake bread?", "response_0": "Mix <b>flour</b> & water.", "response_1": "No."},
    {"id": "p1", "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": "How do I pick a lock?"}],
     "response_0": "I can't help with that.", "response_1": "Insert a tension wrench..."},
    {"id": "p2", "prompt": "Tell me a joke.", "response_0": "Why did the chicken...", "response_1": "Knock knock."},
    {"id": "p3", "prompt": "What is 2+2?", "response_0": "4", "response_1": "5"},
]


def _button(field: str, value: str) -> str:
    return f'button[data-field="{field}"][data-value="{value}"]'


def _saved(path: Path) -> dict:
    return {entry["id"]: entry for entry in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def served(tmp_path):
    pairs = export_pairs(PAIRS, tmp_path / "round1.jsonl")
    server = make_server(pairs)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, pairs
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser(tmp_path):
    chromium = Browser(CHROMIUM, tmp_path / "profile")
    yield chromium
    chromium.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _click_and_wait_for_save(browser: Browser, selector: str) -> str:
    """Click, wait until this click's save has finished, return the status line.

    Waiting for ``pending == 0`` alone is not enough: the click may be handled a moment after CDP returns.
    """
    saves = int(browser.evaluate("document.body.dataset.saves"))
    browser.click(selector)
    browser.wait_for(f"Number(document.body.dataset.saves) > {saves} && document.body.dataset.pending === '0'")
    return browser.evaluate("document.getElementById('status').textContent")


def _answer(browser: Browser, field: str, value: str) -> None:
    status = _click_and_wait_for_save(browser, _button(field, value))
    assert status.startswith("saved"), status


def test_label_pairs_in_the_page(served, browser):
    server, pairs = served
    labels = labels_path_for(pairs)
    browser.open(server.url)
    browser.wait_for("document.body.dataset.ready === 'true'")
    assert browser.evaluate("document.getElementById('progress').textContent") == "Pair 1 of 4 (0 of 4 labelled)"
    # model text is shown as text, never parsed as HTML
    assert browser.evaluate("document.getElementById('response-0').textContent") == "Mix <b>flour</b> & water."
    assert browser.evaluate("document.querySelector('#response-0 b')") is None

    _answer(browser, "better_response_id", "0")
    assert _saved(labels)["p0"]["better_response_id"] == 0  # saved after the first answer already
    _answer(browser, "safer_response_id", "0")
    _answer(browser, "is_response_0_safe", "true")
    _answer(browser, "is_response_1_safe", "false")
    assert browser.evaluate(f"document.querySelector('{_button('is_response_1_safe', 'false')}')"
                            ".classList.contains('selected')")
    assert browser.evaluate("document.getElementById('pair-state').textContent") == "labelled"

    browser.click("#next")  # p1: a conversation prompt, shown turn by turn
    browser.wait_for("document.body.dataset.index === '1'")
    assert "assistant: Hello!" in browser.evaluate("document.getElementById('prompt').textContent")
    _answer(browser, "better_response_id", "1")
    _answer(browser, "safer_response_id", "0")
    _answer(browser, "is_response_0_safe", "true")
    _answer(browser, "is_response_1_safe", "false")
    _answer(browser, "better_response_id", "0")  # a change of mind replaces the answer

    browser.click("#next")  # p2: skipped
    browser.wait_for("document.body.dataset.index === '2'")
    browser.click("#skip")
    browser.wait_for("document.body.dataset.index === '3' && document.body.dataset.saves === '10'")  # 9 answers, 1 skip
    _answer(browser, "better_response_id", "0")  # p3: half labelled

    saved = _saved(labels)
    assert set(saved) == {"p0", "p1", "p2", "p3"}
    assert {k: saved["p0"][k] for k in ("better_response_id", "safer_response_id", "is_response_0_safe",
                                        "is_response_1_safe", "skipped")} == {
        "better_response_id": 0, "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False,
        "skipped": False}
    assert saved["p1"]["better_response_id"] == 0 and saved["p1"]["safer_response_id"] == 0
    assert saved["p2"]["skipped"] is True and saved["p2"]["better_response_id"] is None
    assert saved["p3"]["better_response_id"] == 0 and saved["p3"]["safer_response_id"] is None

    # reopening resumes at the first pair neither labelled nor skipped (p3), and shows saved answers
    browser.call("Page.reload")
    browser.wait_for("document.body.dataset.ready === 'true'")
    assert browser.evaluate("document.getElementById('progress').textContent") == "Pair 4 of 4 (2 of 4 labelled)"
    browser.click("#prev")
    browser.click("#prev")
    browser.wait_for("document.body.dataset.index === '1'")
    assert browser.evaluate(f"document.querySelector('{_button('better_response_id', '0')}').classList"
                            ".contains('selected')")

    # a save that fails (a full disk, say) is reported on the page, and the file keeps every earlier answer
    before = labels.read_text()

    def full_disk(data):
        raise OSError("No space left on device")

    server.store.update = full_disk
    assert _click_and_wait_for_save(browser, _button("safer_response_id", "1")).startswith("NOT saved")
    assert labels.read_text() == before

    records = import_labels(pairs, require_complete=False)
    assert [r.extra["id"] for r in records] == ["p0", "p1"]
    assert (records[1].better_response_id, records[1].safer_response_id) == (0, 0)
    assert records[1].prompt == PAIRS[1]["prompt"] and records[0].extra["annotator"] == "human"
