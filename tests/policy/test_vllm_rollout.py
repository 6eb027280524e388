"""The vLLM rollout switch: validation, the error without vLLM or a GPU, the weight copy into the
engine (with a stand-in engine object; vLLM itself needs a CUDA GPU) and the rollout layout."""

from __future__ import annotations

import copy
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from saferlhf.config import ConfigError, LoraConfig, load_config
from saferlhf.models.loading import apply_lora, load_causal_lm, load_tokenizer
from saferlhf.policy.config import PolicyStageConfig
from saferlhf.policy.rollout import answer_logits, encode_prompts
from saferlhf.policy.trainer import PolicyTrainer
from saferlhf.policy.vllm_rollout import VLLMRollout, check_vllm_available, weights_for_engine
from saferlhf.training.setup import make_accelerator

from .toy_task import toy_overrides


class StubEngine:
    """What VLLMRollout uses of ``vllm.LLM``: ``generate``, ``reset_prefix_cache`` and the model's ``load_weights``."""

    def __init__(self, answers):
        self.loaded: dict[str, torch.Tensor] = {}
        self.loads, self.resets, self.requests = 0, 0, []
        model = SimpleNamespace(load_weights=self._load)
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=model))))
        self.answers = answers  # per prompt: list of (token ids, finish_reason, stop_reason)

    def _load(self, weights):
        for name, tensor in weights:
            self.loaded[name] = tensor.detach().clone()
            self.loads += 1

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, requests, sampling_params, use_tqdm=False):
        self.requests.append((requests, sampling_params))
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, finish_reason=finish, stop_reason=stop)
                                         for ids, finish, stop in self.answers[i]]) for i in range(len(requests))]


def config_for(toy_model, toy_prompts, tmp_path, *extra):
    return load_config(PolicyStageConfig, overrides=toy_overrides(toy_model, toy_prompts, tmp_path, "ppo-lag", 1)
                       + ["rollout.samples_per_prompt=2", "train.batch_size=32", *extra])


def test_backend_switch_is_validated(toy_model, toy_prompts, tmp_path):
    assert config_for(toy_model, toy_prompts, tmp_path).rollout.backend == "hf"  # the default
    with pytest.raises(ConfigError, match="rollout.backend"):
        config_for(toy_model, toy_prompts, tmp_path, "rollout.backend=sglang")
    with pytest.raises(ConfigError, match="rollout.vllm_gpu_memory_utilization"):
        config_for(toy_model, toy_prompts, tmp_path, "rollout.backend=vllm", "rollout.vllm_gpu_memory_utilization=0")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None and torch.cuda.is_available(),
                    reason="vLLM and a GPU are present: there is no error to check")
def test_clear_error_without_vllm_or_gpu(toy_model, toy_prompts, tmp_path):
    expected = "pip install vllm" if importlib.util.find_spec("vllm") is None else "needs a CUDA GPU"
    with pytest.raises(ValueError, match=f"rollout.backend.*{expected}"):
        check_vllm_available()
    config = config_for(toy_model, toy_prompts, tmp_path, "rollout.backend=vllm")
    with pytest.raises(ValueError, match="rollout.backend"):
        PolicyTrainer(config)


def test_weights_are_copied_into_the_engine_when_they_change(toy_model, toy_prompts, tmp_path):
    config = config_for(toy_model, toy_prompts, tmp_path)
    tokenizer = load_tokenizer(str(toy_model), padding_side="left")
    actor = load_causal_lm(str(toy_model))
    end = tokenizer.convert_tokens_to_ids("<eos>")
    engine = StubEngine([[([5, 6, end], "stop", None), ([7], "length", None)]] * 2)
    vllm = VLLMRollout(config, tokenizer, make_accelerator(config.train), llm=engine, model=actor)
    vllm.sampling_params = lambda max_tokens: {"max_tokens": max_tokens}  # vllm.SamplingParams needs vllm

    vllm.generate(actor, ["q", "q q"], weights_version=0)
    assert set(engine.loaded) == {name for name, _ in actor.named_parameters()}  # HF names are vLLM's for Llama
    assert all(torch.equal(engine.loaded[n], p) for n, p in actor.named_parameters()) and engine.resets == 1
    loads = engine.loads
    vllm.generate(actor, ["q", "q q"], weights_version=0)  # no update since: no copy
    assert engine.loads == loads
    with torch.no_grad():
        actor.model.norm.weight.add_(1.0)  # "an update"
    vllm.generate(actor, ["q", "q q"], weights_version=1)
    assert torch.equal(engine.loaded["model.norm.weight"], actor.model.norm.weight) and engine.resets == 2


def test_lora_weights_are_merged_for_the_copy_and_unmerged_after(toy_model, toy_prompts, tmp_path):
    config = config_for(toy_model, toy_prompts, tmp_path)
    tokenizer = load_tokenizer(str(toy_model), padding_side="left")
    torch.manual_seed(0)
    actor = apply_lora(load_causal_lm(str(toy_model)), LoraConfig(enabled=True, r=4, dropout=0.0), "CAUSAL_LM")
    with torch.no_grad():
        for name, parameter in actor.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)  # a trained adapter (B starts at zero)
    before = {n: p.detach().clone() for n, p in actor.named_parameters()}
    merged = dict(copy.deepcopy(actor).merge_and_unload().named_parameters())
    engine = StubEngine([])
    VLLMRollout(config, tokenizer, make_accelerator(config.train), llm=engine).sync_weights(actor)
    assert set(engine.loaded) == set(merged)  # base names: no base_model.model., .base_layer or lora_ tensors
    for name, tensor in merged.items():
        assert torch.allclose(engine.loaded[name], tensor, atol=1e-6), name
    for name, parameter in actor.named_parameters():  # the adapter is unmerged again (W + BA - BA: round-off)
        assert torch.allclose(parameter, before[name], atol=1e-6), name
    assert not any("lora_" in name for name, _ in weights_for_engine(actor))


def test_answers_are_laid_out_like_generate(toy_model, toy_prompts, tmp_path):
    config = config_for(toy_model, toy_prompts, tmp_path, "rollout.max_new_tokens=4")
    tokenizer = load_tokenizer(str(toy_model), padding_side="left")
    actor = load_causal_lm(str(toy_model))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<eos>", "h1", "g", "n1")}
    answers = [[([ids["h1"], ids["g"]], "stop", ids["<eos>"]),  # stopped on a stop token vLLM left out
                ([ids["g"], ids["n1"], ids["g"], ids["g"]], "length", None)],
               [([ids["n1"], ids["<eos>"]], "stop", None), ([ids["h1"]], "length", None)]]
    engine = StubEngine(answers)
    vllm = VLLMRollout(config, tokenizer, make_accelerator(config.train), llm=engine, model=actor)
    vllm.sampling_params = lambda max_tokens: {"max_tokens": max_tokens}
    rollout = vllm.generate(actor, ["q", "q q q"], weights_version=0)

    prompt_ids, prompt_mask, _ = encode_prompts(tokenizer, ["q", "q q q"], 16 - 4)
    assert [r["prompt_token_ids"] for r in engine.requests[0][0]] == [
        row[mask.bool()].tolist() for row, mask in zip(prompt_ids, prompt_mask)]
    assert rollout.prompt_width == prompt_ids.size(1) and len(rollout) == 4
    assert torch.equal(rollout.input_ids[:, :rollout.prompt_width], prompt_ids.repeat_interleave(2, dim=0))
    assert rollout.response_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert rollout.response_texts == ["h1 g", "g n1 g g", "n1", "h1"]
    assert rollout.prompts == ["q", "q", "q q q", "q q q"]
    assert torch.equal(rollout.position_ids[0, -4:-1], rollout.position_ids[0, rollout.prompt_width - 1] + 1 +
                       torch.arange(3))
    assert answer_logits(actor, rollout).shape == (4, 4, len(tokenizer))  # the actor can score it
