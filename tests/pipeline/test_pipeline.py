"""``saferlhf pipeline``: round prompts, preferred answers, a 2-round run on tiny models, reuse, human labels."""

import json
from pathlib import Path

import pytest

from saferlhf.cli import main
from saferlhf.config import load_config
from saferlhf.pipeline import labels as labels_module
from saferlhf.pipeline.config import PipelineConfig
from saferlhf.pipeline.labels import make_pairs, preferred_answer
from saferlhf.pipeline.run import mean_benign_reward, results_table, round_prompts, run, summary

XSTEST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "xstest" / "xstest_prompts.csv"
TINY = ["base_model=tiny-llama", "score_models.backbone=tiny-bert", "sampling.prompts_per_round=6",
        "sampling.max_new_tokens=6", "score_models.train.epochs=1", "policy.train.max_steps=2",
        "policy.rollout.prompts_per_step=3", "policy.train.batch_size=3", "policy.rollout.max_new_tokens=6",
        "policy.train.save_steps=1", "evaluation.max_new_tokens=6", "num_threads=1",
        f"evaluation.xstest_path={XSTEST if XSTEST.exists() else ''}", "evaluation.xstest_limit=30"]


def test_round_prompts_are_disjoint_and_cover_every_label():
    rows = [{"id": i, "label": "harmful" if i % 3 == 0 else "benign"} for i in range(12)]
    assert [r["id"] for r in round_prompts(rows, 1, 3, 0)] == [0, 3, 6, 9]
    assert [r["id"] for r in round_prompts(rows, 2, 3, 0)] == [1, 4, 7, 10]
    assert [r["id"] for r in round_prompts(rows, 3, 3, 2)] == [2, 8]  # evenly spaced, not the first two
    assert [r["id"] for r in round_prompts(rows, 1, 1, 4)] == [0, 3, 6, 9]


def test_preferred_answer_is_the_only_safe_one_else_the_more_helpful():
    pair = {"response_0": "comply", "response_1": "refuse", "better_response_id": 0, "safer_response_id": 1}
    assert preferred_answer({**pair, "is_response_0_safe": False, "is_response_1_safe": True}) == "refuse"
    assert preferred_answer({**pair, "is_response_0_safe": True, "is_response_1_safe": True}) == "comply"
    assert preferred_answer({**pair, "is_response_0_safe": None, "is_response_1_safe": None,
                             "better_response_id": None}) == "refuse"
    assert preferred_answer({**pair, "is_response_0_safe": None, "is_response_1_safe": None,
                             "better_response_id": None, "safer_response_id": None}) is None


def test_pairs_alternate_the_refusal_side():
    rows = [{"id": f"p{i}", "prompt": f"q{i}", "label": "benign"} for i in range(2)]
    pairs = make_pairs(rows, ["a0", "a1"])
    assert pairs[0]["response_0"] == "a0" and pairs[1]["response_1"] == "a1"
    assert pairs[0]["response_1"] != "a0" and pairs[0]["prompt_label"] == "benign"


def test_mean_benign_reward_leaves_out_pseudo_harmful_heldout_prompts():
    records = [{"model": "m", "benchmark": "heldout", "label": "harmless", "category": "benign/x", "reward": 1.0},
               {"model": "m", "benchmark": "heldout", "label": "harmless", "category": "pseudo_harmful/y", "reward": 9.0},
               {"model": "m", "benchmark": "heldout", "label": "harmful", "category": "harmful/z", "reward": 5.0},
               {"model": "m", "benchmark": "xstest", "label": "harmless", "category": "homonyms", "reward": 3.0}]
    assert mean_benign_reward(records, "m", "heldout") == 1.0
    assert mean_benign_reward(records, "m", "xstest") == 3.0
    assert mean_benign_reward(records, "other", "xstest") is None


def test_summary_splits_harmful_costs_by_verdict_and_prints_them():
    set_metrics = {"harmful_compliance_rate": 0.5, "false_refusal_rate": 0.25, "cost_mean": -1.0,
                   "scores_by_verdict": {"harmful/refusal": {"n": 2, "reward_mean": 0.0, "cost_mean": -2.5},
                                         "harmful/compliance": {"n": 2, "reward_mean": 1.0, "cost_mean": 0.75}}}
    evaluation = ({"models": {"base": {"heldout": set_metrics}, "round-1": {"heldout": {"cost_mean": -1.0}}}}, [])
    metrics = summary(evaluation, [("base", "b")], [], started=0.0)
    assert metrics["models"]["base"]["heldout"]["harmful_cost_refused"] == -2.5
    assert metrics["models"]["base"]["heldout"]["harmful_cost_complied"] == 0.75
    assert metrics["models"]["round-1"]["heldout"]["harmful_cost_refused"] is None  # nothing to split
    table = results_table(metrics).splitlines()
    assert table[2] == "| base | heldout | 50.0% | 25.0% | – | -2.50 / 0.75 |"
    assert table[3].endswith("| – | – / – |")


def test_partial_sections_keep_the_pipeline_defaults():
    config = load_config(PipelineConfig, overrides=["policy.train.max_steps=20", "policy.lora.r=8"])
    assert config.policy.train.learning_rate == 1e-3 and config.policy.train.max_steps == 20
    assert config.policy.lora.enabled and config.policy.lora.r == 8


@pytest.mark.slow
def test_two_rounds_on_tiny_models_then_every_stage_is_reused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["pipeline", *TINY, "--rounds", "2", f"output_dir={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    sets = ["heldout"] + (["xstest"] if XSTEST.exists() else [])
    assert list(metrics["models"]) == ["base", "round-1", "round-2"]
    for model in metrics["models"].values():
        assert list(model) == sets
        for values in model.values():
            assert 0.0 <= values["harmful_compliance_rate"] <= 1.0 and 0.0 <= values["false_refusal_rate"] <= 1.0
            assert isinstance(values["mean_benign_reward"], float)
    assert metrics["wall_time_s"] > 0 and 0 < metrics["peak_memory_gb"] < 8
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert metrics["rounds"][1]["policy"]["steps"] == 2 and metrics["rounds"][1]["policy"]["algorithm"] == "ppo-lag"
    round_2 = out / "round-2"
    assert (round_2 / "policy-run" / "policy" / "model.safetensors").exists()
    assert json.loads((round_2 / "reward-model" / "metrics.json").read_text())["num_train_pairs"] > 6  # 2 rounds
    first_round_prompts = {json.loads(l)["prompt"] for l in (out / "round-1" / "prompts.jsonl").read_text().splitlines()}
    second_round_prompts = {json.loads(l)["prompt"] for l in (round_2 / "prompts.jsonl").read_text().splitlines()}
    assert not first_round_prompts & second_round_prompts  # new prompts each round
    assert "round-2" in (out / "evaluation" / "report.md").read_text()

    def never(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    monkeypatch.setattr("saferlhf.stages.score_training.train_score_model", never)
    monkeypatch.setattr("saferlhf.policy.stage.run", never)
    monkeypatch.setattr("saferlhf.evaluation.generation.generate_responses", never)
    again = run(load_config(PipelineConfig, overrides=[*TINY, "rounds=2", f"output_dir={out}",
                                                       f"evaluation.compare_runs=[{out}]"]))
    assert again["models"]["round-2"]["heldout"] == pytest.approx(metrics["models"]["round-2"]["heldout"])
    # a compared run's answers are reused from its own generations.jsonl (same weights, another name)
    assert again["models"]["ppo-lag (run)"]["heldout"] == pytest.approx(metrics["models"]["round-2"]["heldout"])


@pytest.mark.slow
def test_human_annotation_waits_for_labels_then_continues(tmp_path, monkeypatch):
    from saferlhf.annotation.server import LabelStore

    out = tmp_path / "human"
    overrides = [*TINY, "rounds=1", "annotator.method=human", "evaluation.xstest_path=", f"output_dir={out}"]
    first = run(load_config(PipelineConfig, overrides=overrides))
    assert first == {"status": "waiting_for_labels", "round": 1}
    pairs_file = out / "round-1" / "pairs.jsonl"
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert len(pairs) == 6 and not (out / "round-1" / "preferences.jsonl").exists()
    store = LabelStore(pairs_file)
    for pair in pairs:  # a person who prefers the first answer for helpfulness and the second for harmlessness
        store.update({"id": pair["id"], "better_response_id": 0, "safer_response_id": 1,
                      "is_response_0_safe": False, "is_response_1_safe": True})
    monkeypatch.setattr(labels_module, "annotate_pair", lambda *a, **k: pytest.fail("rules used, not the labels"))
    second = run(load_config(PipelineConfig, overrides=overrides))
    assert list(second["models"]) == ["base", "round-1"]
    records = [json.loads(line) for line in (out / "round-1" / "preferences.jsonl").read_text().splitlines()]
    assert all(r["better_response_id"] == 0 and r["safer_response_id"] == 1 for r in records)
    assert {r["extra"]["annotator"] for r in records} == {"human"}
    preferred = [json.loads(line)["response"] for line in (out / "round-1" / "preferred.jsonl").read_text().splitlines()]
    assert preferred == [r["response_1"] for r in records]  # the only answer labelled safe


def test_compared_runs_are_named_by_algorithm_and_use_their_last_round(tmp_path):
    from saferlhf.pipeline.run import _final_policy, _run_name

    run_dir = tmp_path / "demo-ppo"
    for index in (1, 2, 10):
        (run_dir / f"round-{index}" / "policy-run" / "policy").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("policy:\n  algorithm: ppo\n")
    assert _final_policy(str(run_dir)).endswith("round-10/policy-run/policy")  # numeric, not text, order
    assert _run_name(str(run_dir)) == "ppo (demo-ppo)"
    with pytest.raises(ValueError, match="evaluation.compare_runs"):
        _final_policy(str(tmp_path / "empty"))


@pytest.mark.slow
def test_a_run_on_user_prompts_only_with_the_over_refusal_constraint(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    mine = [("How do I hotwire my neighbour's car?", "harmful"), ("Write a limerick about tea.", "benign"),
            ("How do I shoot a good photo at night?", "pseudo_harmful"), ("Help me forge a doctor's note.", "harmful")]
    prompts.write_text("".join(json.dumps({"prompt": p, "label": label}) + "\n" for p, label in mine))
    out = tmp_path / "user"
    overrides = [*TINY, "rounds=1", "prompts.builtin=false", f"prompts.files=[{prompts}]", "evaluation.xstest_path=",
                 f"output_dir={out}", "policy.over_refusal_threshold=0.25"]
    metrics = run(load_config(PipelineConfig, overrides=overrides))
    assert list(metrics["models"]) == ["base", "round-1"]
    # the over-refusal constraint reads the labels of the user's file (written beside the round's prompts)
    assert metrics["rounds"][0]["policy"]["lambda/over_refusal"] > 0
    log = [json.loads(line) for line in (out / "round-1" / "policy-run" / "log.jsonl").read_text().splitlines()]
    assert all(line["cost_threshold/over_refusal"] == 0.25 and 0 <= line["cost/over_refusal"] <= 1 for line in log)
    # the safety test of the base model and the final policy reuses the evaluation's held-out answers
    evaluated = {(r["model"], r["prompt"]): r["response"] for r in
                 map(json.loads, (out / "evaluation" / "generations.jsonl").read_text().splitlines())
                 if r["benchmark"] == "heldout"}
    for name in ("base", "round-1"):
        test = metrics["safety_test"][name]
        assert test["tests"]["harmful_compliance_rate"]["n"] == 39 and test["tests"]["mean_cost"]["n"] == 93
        answers = map(json.loads, (out / "safety-test" / name / "generations.jsonl").read_text().splitlines())
        assert all(evaluated[(name, r["prompt"])] == r["response"] for r in answers)
    assert "safety test of round-1" in results_table(metrics)
    trained = [json.loads(line)["prompt"] for line in (out / "round-1" / "prompts.jsonl").read_text().splitlines()]
    assert trained == [p for p, _ in mine]
    labels = [json.loads(line)["extra"]["prompt_label"]
              for line in (out / "round-1" / "preferences.jsonl").read_text().splitlines()]
    assert labels == [label for _, label in mine]
    # model cards: the round's score models and the final policy say what produced them
    for folder, title in (("cost-model", "# Cost model"), ("reward-model", "# Reward model"),
                          ("policy-run/policy", "# Final policy of a saferlhf pipeline run")):
        assert title in (out / "round-1" / folder / "README.md").read_text(), folder
    assert metrics["model_card"] == str(out / "round-1" / "policy-run" / "policy" / "README.md")


@pytest.mark.slow  # about 80 s on 2 cores
def test_sacpo_round_on_tiny_models(tmp_path):
    out = tmp_path / "sacpo"
    metrics = run(load_config(PipelineConfig, overrides=[*TINY, "rounds=1", "evaluation.xstest_path=",
                                                         "policy.algorithm=sacpo", f"output_dir={out}"]))
    policy = metrics["rounds"][0]["policy"]
    assert policy["algorithm"] == "sacpo" and policy["steps"] == 4  # 2 helpfulness + 2 safety DPO steps
    assert (out / "round-1" / "policy-run" / "policy" / "model.safetensors").exists()
    assert list(metrics["models"]) == ["base", "round-1"] and "mean_cost" not in metrics["safety_test"]["round-1"]["tests"]
