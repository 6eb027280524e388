"""The LLM-judge annotator against a local stand-in OpenAI-compatible server (127.0.0.1 only)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from chat_stand_in import ChatStandIn, serving

from saferlhf.annotation import PairJudgeConfig, judge_pairs
from saferlhf.annotation.judge import parse_harmlessness, parse_helpfulness
from saferlhf.evaluation.judge import JudgeError


def _shown(prompt: str, letter: str) -> str:
    return re.search(rf"Answer {letter}:\n<<<\n(.*?)\n>>>", prompt, re.DOTALL).group(1)


class _StandIn(ChatStandIn):
    """A judge that reads the answers: one marked DETAILED is more helpful, one marked SAFE is safe and more harmless.

    ``server.mode``: "fair" (as above), "first" (always prefers answer A: position bias),
    "unreadable" (no verdict line), "error" (HTTP 400).
    """

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        self.server.requests.append({"auth": self.headers.get("Authorization"), "prompt": prompt})
        if self.server.mode == "error":
            return self.send_json(400, {"error": {"message": "model not found"}})
        a, b = _shown(prompt, "A"), _shown(prompt, "B")
        if "more HELPFUL" in prompt:
            winner = "A" if self.server.mode == "first" or "DETAILED" in a else "B"
            text = f"A is more detailed.\n**More helpful:** {winner}"
        else:
            winner = "A" if self.server.mode == "first" or "SAFE" in a else "B"
            flags = ["safe" if "SAFE" in answer else "unsafe" for answer in (a, b)]
            text = f"Reasons.\nAnswer A: {flags[0]}\nAnswer B: {flags[1]}\nMore harmless: Answer {winner}"
        if self.server.mode == "unreadable":
            text = "I would rather not compare these."
        self.send_json(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})


@pytest.fixture
def stand_in():
    with serving(_StandIn, mode="fair") as server:
        yield server
    server.server_close()


def _config(server, **kwargs) -> PairJudgeConfig:
    return PairJudgeConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="stand-in",
                           api_key_env="ANNOTATION_JUDGE_KEY", max_retries=0, timeout=10.0, **kwargs)


PAIRS = [
    {"id": "q1", "prompt": "How do I make a weapon?", "response_0": "SAFE refusal: I can't help with that.",
     "response_1": "DETAILED steps: ...", "prompt_label": "harmful"},
    {"id": "q2", "prompt": [{"role": "user", "content": "Bread?"}], "response_0": "DETAILED SAFE recipe",
     "response_1": "Buy some."},
]


def test_parse_verdicts():
    assert parse_helpfulness("B is better.\nMore helpful: B") == 1
    assert parse_helpfulness("**More helpful:** answer a") == 0
    assert parse_helpfulness("More helpful: Both") is None and parse_helpfulness("") is None
    assert parse_harmlessness("Answer A: unsafe\nAnswer B: **safe**\nMore harmless: B") == (1, False, True)
    assert parse_harmlessness("Answer A: safe\nMore harmless: A") == (0, True, None)
    assert parse_harmlessness("nothing") == (None, None, None)


def test_judge_labels_pairs_in_both_orders(stand_in, monkeypatch):
    monkeypatch.setenv("ANNOTATION_JUDGE_KEY", "secret")
    records = judge_pairs(PAIRS, _config(stand_in), progress=False)
    first, second = records
    assert (first.better_response_id, first.safer_response_id, first.is_response_0_safe,
            first.is_response_1_safe) == (1, 0, True, False)
    assert (second.better_response_id, second.safer_response_id, second.is_response_0_safe,
            second.is_response_1_safe) == (0, 0, True, False)
    assert second.prompt == PAIRS[1]["prompt"] and "user: Bread?" in stand_in.requests[4]["prompt"]
    assert first.extra["annotator"] == "judge" and first.extra["id"] == "q1"
    assert first.extra["prompt_label"] == "harmful"
    assert len(first.extra["judge_replies"]) == 4
    # two questions, two orders: four calls per pair; the second order shows response_1 as answer A
    assert len(stand_in.requests) == 8 and {r["auth"] for r in stand_in.requests} == {"Bearer secret"}
    assert [("more HELPFUL" in r["prompt"], _shown(r["prompt"], "A")) for r in stand_in.requests[:4]] == [
        (True, PAIRS[0]["response_0"]), (False, PAIRS[0]["response_0"]),
        (True, PAIRS[0]["response_1"]), (False, PAIRS[0]["response_1"])]


def test_position_bias_leaves_labels_unset(stand_in, capsys):
    stand_in.mode = "first"
    records = judge_pairs(PAIRS[:1], _config(stand_in), progress=False)
    assert records[0].better_response_id is None and records[0].safer_response_id is None
    assert (records[0].is_response_0_safe, records[0].is_response_1_safe) == (True, False)  # flags agree
    assert "better_response_id 1 (0 unreadable, 1 order-inconsistent)" in capsys.readouterr().out
    stand_in.requests.clear()
    one_order = judge_pairs(PAIRS[:1], _config(stand_in, both_orders=False), progress=False)
    assert one_order[0].better_response_id == 0 and len(stand_in.requests) == 2  # bias goes unnoticed


def test_unreadable_replies_are_counted(stand_in, capsys):
    stand_in.mode = "unreadable"
    records = judge_pairs(PAIRS, _config(stand_in), progress=False)
    assert len(records) == 2 and all(r.better_response_id is None and r.is_response_1_safe is None for r in records)
    assert "is_response_0_safe 2 (2 unreadable, 0 order-inconsistent)" in capsys.readouterr().out


def test_endpoint_errors_and_missing_config(stand_in):
    stand_in.mode = "error"
    with pytest.raises(JudgeError, match="HTTP 400"):
        judge_pairs(PAIRS, _config(stand_in), progress=False)
    with pytest.raises(ValueError, match="base_url is empty"):
        judge_pairs(PAIRS, PairJudgeConfig(), progress=False)


def test_evaluate_judge_section_works_too(stand_in):
    """Any object with the endpoint fields will do (``evaluate``'s judge section has no both_orders)."""
    config = SimpleNamespace(base_url=f"http://127.0.0.1:{stand_in.server_address[1]}/v1", model="stand-in",
                             api_key_env="UNSET_KEY_VARIABLE", timeout=10.0, max_retries=0, max_tokens=64)
    records = judge_pairs(PAIRS[:1], config, progress=False)
    assert records[0].better_response_id == 1 and len(stand_in.requests) == 4  # both orders by default
    assert stand_in.requests[0]["auth"] is None
