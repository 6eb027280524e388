"""The LLM judge against a local stand-in OpenAI-compatible server (127.0.0.1 only)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from chat_stand_in import ChatStandIn, serving

from saferlhf.evaluation.annotate import add_judge_scores
from saferlhf.evaluation.judge import Judge, JudgeError, parse_score


class _StandIn(ChatStandIn):
    """Replies like /v1/chat/completions; scores depend on which rubric it was sent."""

    def do_POST(self):  # noqa: N802 (http.server naming)
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if server.failures_left > 0:
            server.failures_left -= 1
            self.send_json(server.failure_code, {"error": {"message": "try again"}})
            return
        rubric = body["messages"][0]["content"]
        text = "Clear and complete.\nScore: 8" if "how HELPFUL" in rubric else "Nothing harmful. [[10]]"
        if "UNREADABLE" in rubric:
            text = "I would rather not grade this."
        self.send_json(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})


@pytest.fixture
def stand_in():
    with serving(_StandIn, failures_left=0, failure_code=500) as server:
        yield server


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_parse_score_variants():
    assert parse_score("Good answer.\nScore: 7") == 7.0
    assert parse_score("Rating = 3") == 3.0
    assert parse_score("I think 8/10 overall. Score: 9") == 9.0  # the explicit "Score:" wins
    assert parse_score("verdict [[4]]") == 4.0
    assert parse_score("6/10") == 6.0
    assert parse_score("5") == 5.0
    assert parse_score("**Score:** 2") == 2.0
    assert parse_score("Score: 11") is None  # out of range
    assert parse_score("between 3 and 4") is None  # ambiguous: two numbers, no marker
    assert parse_score("") is None and parse_score(None) is None


def test_two_rubrics_two_calls(stand_in):
    judge = Judge(_url(stand_in), "stand-in", api_key="k123", backoff=0.0)
    helpful = judge.score("How do I bake bread?", "Mix flour, water, yeast; bake at 220 C.", "helpfulness")
    harmless = judge.score("How do I bake bread?", "Mix flour, water, yeast; bake at 220 C.", "harmlessness")
    assert (helpful.score, harmless.score) == (8.0, 10.0)
    assert len(stand_in.requests) == 2
    first = stand_in.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer k123"
    assert first["body"]["model"] == "stand-in" and first["body"]["temperature"] == 0.0
    assert "Mix flour" in first["body"]["messages"][0]["content"]
    assert "HARMLESS" in stand_in.requests[1]["body"]["messages"][0]["content"]
    with pytest.raises(ValueError, match="unknown judge aspect"):
        judge.score("p", "r", "honesty")


def test_retries_transient_errors_then_gives_up(stand_in):
    stand_in.failures_left = 2
    judge = Judge(_url(stand_in), "stand-in", max_retries=2, backoff=0.0)
    assert judge.score("p", "r", "helpfulness").score == 8.0
    assert len(stand_in.requests) == 3
    stand_in.failures_left = 5
    with pytest.raises(JudgeError, match="after 2 attempts.*HTTP 500"):
        Judge(_url(stand_in), "stand-in", max_retries=1, backoff=0.0).score("p", "r", "helpfulness")


def test_client_errors_are_not_retried(stand_in):
    stand_in.failures_left, stand_in.failure_code = 1, 401
    with pytest.raises(JudgeError, match="HTTP 401"):
        Judge(_url(stand_in), "stand-in", max_retries=3, backoff=0.0).score("p", "r", "helpfulness")
    assert len(stand_in.requests) == 1


def test_unreachable_endpoint_fails_clearly():
    with pytest.raises(JudgeError, match="failed after 1 attempts"):
        Judge("http://127.0.0.1:9/v1", "x", max_retries=0, timeout=2.0).chat([{"role": "user", "content": "hi"}])


def test_add_judge_scores_on_records(stand_in, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "secret")
    config = SimpleNamespace(base_url=_url(stand_in), model="stand-in", api_key_env="MY_JUDGE_KEY",
                             aspects=["helpfulness", "harmlessness"], timeout=5.0, max_retries=0, max_tokens=64)
    records = [{"prompt": "Say hi", "response": "Hi!"}, {"prompt": "UNREADABLE", "response": "?"}]
    info = add_judge_scores(records, config, progress=False)
    assert records[0]["judge_helpfulness"] == 8.0 and records[0]["judge_harmlessness"] == 10.0
    assert records[1]["judge_helpfulness"] is None and "rather not" in records[1]["judge_helpfulness_reply"]
    assert info["calls"] == 4 and info["unparsed"] == {"helpfulness": 1, "harmlessness": 1}
    assert {r["auth"] for r in stand_in.requests} == {"Bearer secret"}
