"""The loop's pieces on the toy task: step metrics, LoRA reference, critics, PTX, evaluation, NaN stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saferlhf.config import load_config
from saferlhf.models.score_model import ScoreModel
from saferlhf.policy.checkpoint import latest_checkpoint
from saferlhf.policy.stage import PolicyStageConfig, run
from saferlhf.policy.trainer import NonFiniteLossError, PolicyTrainer
from saferlhf.runio import read_log
from saferlhf.training.setup import make_accelerator

from .toy_task import toy_overrides

HERE = Path(__file__).resolve().parent


def make_config(toy_model, toy_prompts, output_dir, algorithm="ppo-lag", steps=3, *extra) -> PolicyStageConfig:
    return load_config(PolicyStageConfig, overrides=toy_overrides(toy_model, toy_prompts, output_dir, algorithm, steps)
                       + ["rollout.prompts_per_step=16", "train.batch_size=8"] + list(extra))


STEP_KEYS = {"reward", "cost", "episode_cost", "cost_threshold", "lambda", "kl", "entropy", "response_length",
             "clip_fraction", "actor_loss", "unsafe_share", "learning_rate",
             "time/generate", "time/score", "time/update", "time/step"}


@pytest.mark.parametrize("algorithm,critics", [("ppo-lag", {"reward", "cost"}), ("ppo", {"reward"}),
                                               ("reward-shaping", {"reward"}), ("critic-free", set())])
def test_one_step_of_each_algorithm(toy_model, toy_prompts, tmp_path, algorithm, critics):
    config = make_config(toy_model, toy_prompts, tmp_path, algorithm)
    trainer = PolicyTrainer(config, make_accelerator(config.train))
    assert set(trainer.spec.critics) == critics
    assert set(trainer.models) == {"actor", *(f"{name}_critic" for name in critics)}
    metrics = trainer.step()
    expected = STEP_KEYS | {f"{name}_critic_loss" for name in critics}
    assert expected <= set(metrics), expected - set(metrics)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # the actor is still the reference policy
    assert all(metrics[f"time/{part}"] > 0 for part in ("generate", "score", "update"))
    assert trainer.global_step == 1
    expected_lambda = {"ppo": 0.0, "reward-shaping": 1.0}.get(algorithm)
    if expected_lambda is not None:
        assert metrics["lambda"] == expected_lambda
    else:  # the toy policy starts above the threshold, so λ grows: log λ = 0.5 · (Ĵ_c - d)
        assert metrics["lambda"] == pytest.approx(torch.tensor(0.5 * (metrics["episode_cost"] - 0.3)).exp().item())
    assert metrics["episode_cost"] == pytest.approx(metrics["cost"])
    # KL = 0 at step 1 holds by construction (the actor starts as the reference); after one update it must not:
    # a reference that followed the actor (shared weights, no frozen copy) would keep it at 0
    assert trainer.step()["kl"] != pytest.approx(0.0, abs=1e-6)


def test_critics_start_from_the_score_models(toy_model, toy_prompts, tmp_path):
    from transformers import AutoTokenizer

    torch.manual_seed(3)
    score_model = ScoreModel.from_backbone(str(toy_model), kind="reward")
    score_model.save_pretrained(tmp_path / "reward-model", AutoTokenizer.from_pretrained(toy_model))
    config = make_config(toy_model, toy_prompts, tmp_path / "run", "ppo", 1, f"reward.path={tmp_path / 'reward-model'}")
    trainer = PolicyTrainer(config, make_accelerator(config.train))
    assert trainer.reward_scorer.shares_tokenizer
    critic = trainer.models["reward_critic"]
    assert torch.equal(critic.score_head.weight, score_model.score_head.weight)
    assert critic is not trainer.reward_scorer.model  # a trained copy, the scorer stays frozen
    with pytest.raises(ValueError, match="critic_init=score-model"):
        PolicyTrainer(make_config(toy_model, toy_prompts, tmp_path / "x", "ppo", 1, "ppo.critic_init=score-model"))
    with pytest.raises(ValueError, match="does not share the actor's tokenizer"):
        PolicyTrainer(make_config(toy_model, toy_prompts, tmp_path / "y", "ppo", 1, "ppo.critic_backbone=tiny-llama"))


def test_lora_reference_is_the_base_model_without_a_copy(toy_model, toy_prompts, tmp_path):
    config = make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 4, "actor.lora.enabled=true", "actor.lora.r=4",
                         "actor.lora.dropout=0.0", "train.learning_rate=1e-2")
    trainer = PolicyTrainer(config, make_accelerator(config.train))
    assert trainer.reference is None
    actor = trainer.models["actor"]
    base_before = {n: p.detach().clone() for n, p in actor.named_parameters() if "lora_" not in n}
    lora_before = {n: p.detach().clone() for n, p in actor.named_parameters() if "lora_B" in n}
    first = trainer.step()
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero
    later = [trainer.step() for _ in range(3)]
    assert later[-1]["kl"] > 0  # the adapter now moves the policy away from the base model
    for name, parameter in actor.named_parameters():
        if name in base_before:
            assert torch.equal(parameter, base_before[name]), f"{name} (a base weight) changed"
    assert any(not torch.equal(p, lora_before[n]) for n, p in actor.named_parameters() if n in lora_before)


def test_run_outputs_ptx_eval_and_tensorboard(toy_model, toy_prompts, tmp_path):
    ptx = tmp_path / "sft.jsonl"
    ptx.write_text("".join(json.dumps({"prompt": "q", "response": "g g g"}) + "\n" for _ in range(5)))
    out = tmp_path / "run"
    config = make_config(toy_model, toy_prompts, out, "ppo-lag", 3, f"ptx.data=[{ptx}]", "ptx.coeff=2.0",
                         f"data.eval=[{{path: {toy_prompts}, format: prompts}}]", "evaluation.max_prompts=6",
                         "report_to=tensorboard", "train.save_steps=2", "train.eval_steps=2")
    metrics = run(config)
    log = read_log(out / "log.jsonl")
    assert [line["step"] for line in log] == [1, 2, 3]
    assert all({"step", "reward", "cost", "lambda", "kl", "ptx_loss"} <= set(line) for line in log)
    assert all(line["ptx_loss"] > 0 for line in log)
    assert [line["step"] for line in read_log(out / "eval.jsonl")] == [0, 2, 3]
    assert {"before/eval/prompts/reward", "after/eval/prompts/cost", "final/reward", "final/lambda"} <= set(metrics)
    assert len((out / "eval_answers_after.jsonl").read_text().splitlines()) == 6
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"
    assert list((out / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert latest_checkpoint(out).name == "step-000003"
    assert json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["ptx_position"] == 3 * 2
    saved = load_file(str(out / "policy" / "model.safetensors"))
    assert saved and (out / "policy" / "tokenizer.json").exists()
    card = (out / "policy" / "README.md").read_text()  # the model card: producer, metrics, sign convention
    assert "Policy trained with Safe RLHF" in card and "final/lambda" in card and "C > 0 for unsafe" in card


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(toy_model, toy_prompts, tmp_path):
    config = make_config(toy_model, toy_prompts, tmp_path, "ppo-lag", 6, "train.save_steps=1",
                         f"reward.path={HERE / 'toy_task.py'}:nan_reward_after_first_calls")
    with pytest.raises(NonFiniteLossError, match="actor_loss is not finite.*reward"):
        run(config)
    assert latest_checkpoint(tmp_path).name == "step-000003"
    assert [line["step"] for line in read_log(tmp_path / "log.jsonl")] == [1, 2, 3]
    stopped = json.loads((tmp_path / "metrics.json").read_text())
    assert stopped["status"] == "stopped" and stopped["last_checkpoint"].endswith("step-000003")


def test_ptx_batch_size_defaults_to_the_update_batch_and_can_be_set(toy_model, toy_prompts, tmp_path):
    ptx = tmp_path / "sft.jsonl"
    ptx.write_text("".join(json.dumps({"prompt": "q", "response": "g " * (i + 1)}) + "\n" for i in range(7)))
    sizes = {}
    for setting in ("0", "5"):
        config = make_config(toy_model, toy_prompts, tmp_path / setting, "ppo-lag", 1, f"ptx.data=[{ptx}]",
                             f"ptx.batch_size={setting}")
        input_ids, attention_mask, labels = PolicyTrainer(config).ptx.next_batch(torch.device("cpu"))
        sizes[setting] = input_ids.shape[0]
        assert attention_mask.shape == labels.shape == input_ids.shape
    assert sizes == {"0": config.train.batch_size, "5": 5}
