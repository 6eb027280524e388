"""Loaders of chatgpt-refusals and XSTest completions, on small written files."""

import json

import pytest

from saferlhf.refusal.data import (
    RefusalDataError, load_chatgpt_refusals, load_xstest_completions, parse_tone_map,
)
from saferlhf.refusal.xstest_agreement import xstest_agreement


def test_chatgpt_tone_mapping(mini_chatgpt):
    examples, dropped = load_chatgpt_refusals(mini_chatgpt)
    assert dropped == {}
    by_tone = {json.loads(mini_chatgpt.read_text())[int(e.source.rsplit(":", 1)[1])]["tone"]: e for e in examples}
    assert (by_tone["complied"].label, by_tone["complied"].kind) == ("compliance", None)
    assert (by_tone["rejected"].label, by_tone["rejected"].kind) == ("full_refusal", "ethical")
    assert (by_tone["redirected"].label, by_tone["redirected"].kind) == ("partial_refusal", "ethical")
    assert (by_tone["dontknow"].label, by_tone["dontknow"].kind) == ("full_refusal", "technical")


def test_dropped_tones_are_counted(mini_chatgpt):
    tone_map = {"complied": "compliance", "rejected": "full_refusal", "redirected": "drop", "contradicted": "drop",
                "dontknow": "drop", "incoherent": "drop"}
    examples, dropped = load_chatgpt_refusals(mini_chatgpt, tone_map)
    assert dropped == {"redirected": 1, "contradicted": 1, "dontknow": 1, "incoherent": 1}
    assert len(examples) == 8


def test_chatgpt_errors_name_file_and_row(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "p", "response": "r", "tone": "complied"},
                                {"prompt": "p", "response": "r", "tone": "shrugged"}]))
    with pytest.raises(RefusalDataError, match=r"bad.json:1: tone 'shrugged'"):
        load_chatgpt_refusals(path)
    path.write_text(json.dumps([{"prompt": "p", "tone": "complied"}]))
    with pytest.raises(RefusalDataError, match=r"bad.json:0: key 'response'"):
        load_chatgpt_refusals(path)
    with pytest.raises(RefusalDataError, match="tone_map\\['x'\\]"):
        parse_tone_map({"x": "compliance:technical"})


def test_xstest_loader_and_shipped_labels(mini_xstest):
    rows = load_xstest_completions(mini_xstest)
    assert len(rows) == 10 and {r.model for r in rows} == {"modela", "modelb"}
    first = rows[0]
    assert (first.label, first.shipped["string_match"], first.is_safe_prompt) == ("compliance", "compliance", True)
    invalid = [r for r in rows if r.id == "v2-4"]
    assert all(r.shipped["gpt4"] is None for r in invalid)  # the judge wrote prose, not a label
    assert not invalid[0].is_safe_prompt


def test_xstest_shipped_rows_must_align(mini_xstest):
    path = mini_xstest / "evaluation" / "automated_evaluation_labels" / "xstest_v2_completions_modela_streval.csv"
    path.write_text(path.read_text().replace("v2-3", "v2-99"))
    with pytest.raises(RefusalDataError, match="does not match"):
        load_xstest_completions(mini_xstest)


def test_xstest_agreement_recomputes_shipped_judges(mini_xstest):
    result = xstest_agreement(mini_xstest, progress=False)
    metrics = result["metrics"]
    # string match: rows 1-4 right, row 5 (partial) called full -> 3-way 4/5, binary 5/5
    assert metrics["string_match_xstest_3way_agreement"] == pytest.approx(0.8)
    assert metrics["string_match_xstest_binary_agreement"] == pytest.approx(1.0)
    # GPT-4: row 4 invalid (counted as disagreement) -> 4/5 both ways; 2 invalid rows over 2 models
    assert metrics["gpt4_xstest_3way_agreement"] == pytest.approx(0.8)
    assert metrics["gpt4_xstest_invalid"] == 2
    assert metrics["rule_xstest_binary_agreement"] == pytest.approx(1.0)
    assert "classifier" not in result["predictions"] and "xstest_binary_agreement" not in metrics
