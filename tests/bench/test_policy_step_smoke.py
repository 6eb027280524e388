"""The policy-step benchmark (bench/policy_step.py + policy_step_sides.py) on tiny models, so that it cannot rot."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "policy_step.py"


@pytest.fixture(scope="module")
def bench():
    """``policy_step`` with its sides module's names (as spawned workers, they import from bench/)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("policy_step", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["policy_step"] = module
        spec.loader.exec_module(module)
        sides = importlib.import_module("policy_step_sides")
        yield SimpleNamespace(**{**vars(sides), **vars(module)})
    finally:
        sys.path.remove(str(SCRIPT.parent))
        sys.modules.pop("policy_step", None)
        sys.modules.pop("policy_step_sides", None)


@pytest.fixture(scope="module")
def score_models(bench, tmp_path_factory):
    return bench.make_score_models("tiny-bert", tmp_path_factory.mktemp("score"), seed=0)


def settings(bench, score_models, workdir: Path) -> dict:
    reward, cost = score_models
    return {"model": "tiny-llama", "prompts": bench.benchmark_prompts(8), "reward_model": reward, "cost_model": cost,
            "critic_backbone": "tiny-llama", "max_new_tokens": 4, "temperature": 1.0, "kl_coeff": 0.01,
            "lambda_init": 1.0, "learning_rate": 1e-5, "threads": 1, "seed": 0, "workdir": str(workdir)}


def test_flop_counter_counts_2n_per_token_forward_and_6n_training(bench):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    weights = bench.linear_weights(model)
    assert weights == 4 * 16 * 16 + 3 * 16 * 32 + 32 * 16  # q k v o, gate up down, LM head
    counter = bench.FlopCounter()
    counter.watch(model.model, weights)
    ids, mask = torch.tensor([[0, 5, 6, 7]]), torch.tensor([[0, 1, 1, 1]])  # 3 tokens, 1 padding
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert counter.flops == 2 * weights * 3
    model(input_ids=ids, attention_mask=mask).logits.sum().backward()
    assert counter.flops == 2 * weights * 3 + 6 * weights * 3


def test_one_step_of_each_side_and_the_result(bench, score_models, tmp_path):
    s = settings(bench, score_models, tmp_path)
    raw = {}
    for side in (bench.TRL_SIDE, "ppo-lag", "critic-free"):
        gate = bench.Gate()
        summary = bench.run_side(side, s, 1, gate)
        assert len(gate.results) == 1 and summary["peak_rss_mb"] > 0
        assert gate.results[0]["completion_tokens"] == 8 * 4, side  # every answer exactly max_new_tokens
        assert gate.results[0]["flops"] > 0
        raw[side] = {"steps": gate.results, "summary": summary, "setup_seconds": 0.0}
    raw["_peak_flops"] = 1e10
    result = bench.build_result(raw, s, warmup=0)
    assert result["trl_grpo_tokens_per_s"] > 0
    for algo in ("ppo-lag", "critic-free"):
        assert result[algo]["tokens_per_s"] > 0 and result[algo]["ratio_vs_trl"] > 0
        assert 0 < result[algo]["mfu"] and {"generate", "score", "update"} <= set(result[algo]["phase_seconds_median"])
    assert set(result["ppo-lag"]["critics"]) == {"reward", "cost"} and result["critic-free"]["critics"] == {}


def test_main_writes_the_json_from_worker_processes(bench, score_models, tmp_path):
    output = tmp_path / "policy_step.json"
    reward, cost = score_models
    assert bench.main(["--model", "tiny-llama", "--reward-model", reward, "--cost-model", cost, "--no-trl",
                       "--algo", "critic-free", "--max-new-tokens", "4", "--warmup-steps", "1", "--steps", "1",
                       "--matmul-size", "256", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["critic-free"]["tokens_per_s"] > 0 and result["measured_steps"] == 1
    assert result["critic-free"]["warmup_step_seconds"] and result["matmul_peak_gflops"] > 0
