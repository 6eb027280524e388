"""Optional vLLM rollout backend of the policy stage (``rollout.backend: vllm``; HF ``generate`` is the default).

Sampling is most of a policy step's time on a GPU; vLLM (Kwon et al., "Efficient Memory Management
for Large Language Model Serving with PagedAttention", SOSP 2023) samples several times faster than
``generate``. The set-up is TRL's "colocate" mode (``trl/generation/vllm_generation.py``):

- every training process holds its own vLLM engine on its own GPU
  (``distributed_executor_backend="external_launcher"``, the engine's seed = the process index),
  taking ``rollout.vllm_gpu_memory_utilization`` of that GPU's memory, and samples the answers to
  its own prompts: ``SamplingParams(n=samples_per_prompt, temperature, top_p, top_k, ...)``;
- the engine starts from the actor's folder; whenever the actor changed (after every update, and
  after a resume) its weights are copied into the engine before the next rollout:
  ``llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights([(name, tensor)])``
  one tensor at a time (gathered first under ZeRO-3), LoRA adapters merged for the copy and
  unmerged after it, then ``llm.reset_prefix_cache()`` (cached prompt blocks hold the old weights);
- the answers come back as token ids and are laid out exactly like :func:`.rollout.sample_rollout`'s
  (left-padded prompt block, answers padded after it, mask up to the first end-of-turn token).

Log-probabilities for PPO are recomputed by the actor itself (:meth:`PolicyTrainer.make_experience`),
so the small numeric differences between vLLM's kernels and the training forward only make the
sampler very slightly off-policy; the ratio in the clipped surrogate is taken against the actor.
Greedy evaluation answers still come from ``generate``.
"""

from __future__ import annotations

import os

import torch

from saferlhf.policy.rollout import (Rollout, encode_prompts, end_of_turn_ids, position_ids_from_mask,
                                     response_mask_until_end)
from saferlhf.training.distributed import full_parameters

KEY = "rollout.backend"


def check_vllm_available() -> None:
    """Raise a clear error, naming the config key, when vLLM cannot run here."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ValueError(f"config key '{KEY}': 'vllm' needs the vllm package (pip install vllm, on a machine with "
                         "a CUDA GPU); it is not installed. Use rollout.backend=hf (the default).") from None
    if not torch.cuda.is_available():
        raise ValueError(f"config key '{KEY}': 'vllm' needs a CUDA GPU and none is visible. "
                         "Use rollout.backend=hf (the default).")


def vllm_name(name: str) -> str:
    """A Hugging Face parameter name as vLLM's ``load_weights`` expects it (PEFT wrappers removed)."""
    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
    return name.replace("_checkpoint_wrapped_module.", "").replace("modules_to_save.default.", "")


def weights_for_engine(model: torch.nn.Module):
    """``(name, tensor)`` of every weight of the (merged) policy, in vLLM's naming: LoRA factors
    (``lora_A`` / ``lora_B``, merged into the base weights by the caller) and PEFT's copies of the
    original modules are skipped."""
    for name, parameter in model.named_parameters():
        if "lora_" in name or "original_module" in name:
            continue
        yield vllm_name(name), parameter.data


class VLLMRollout:
    """One colocated vLLM engine per process; ``generate`` returns a :class:`Rollout`.

    ``llm`` lets a test pass a stand-in engine (an object with ``generate``, ``reset_prefix_cache``
    and ``llm_engine.model_executor.driver_worker.model_runner.model.load_weights``).
    """

    def __init__(self, config, tokenizer, accelerator, llm=None, model=None):
        self.config, self.tokenizer, self.accelerator = config, tokenizer, accelerator
        self.synced_version: int | None = None
        self.end_ids = end_of_turn_ids(tokenizer, model)
        if llm is None:
            check_vllm_available()
            llm = self._start_engine()
        self.llm = llm

    def _start_engine(self):
        from saferlhf.models import builtin
        from vllm import LLM

        c, accelerator = self.config, self.accelerator
        for name, value in (("RANK", accelerator.process_index), ("LOCAL_RANK", accelerator.local_process_index),
                            ("WORLD_SIZE", accelerator.num_processes)):
            os.environ.setdefault(name, str(value))  # external_launcher joins the launcher's process group
        return LLM(model=builtin.resolve(c.actor.name_or_path), tensor_parallel_size=1,
                   gpu_memory_utilization=c.rollout.vllm_gpu_memory_utilization,
                   max_model_len=c.rollout.vllm_max_model_len or c.data.max_length,
                   distributed_executor_backend="external_launcher", seed=c.train.seed + accelerator.process_index,
                   trust_remote_code=c.actor.trust_remote_code, dtype="bfloat16")

    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sync_weights(self, actor: torch.nn.Module) -> int:
        """Copy the actor's current weights into the engine; returns how many tensors were copied."""
        load_weights = self.llm.llm_engine.model_executor.driver_worker.model_runner.model.load_weights
        copied = 0
        with full_parameters(self.accelerator, actor) as model:
            lora = hasattr(model, "merge_adapter")
            if lora:
                model.merge_adapter()
            try:
                for name, tensor in weights_for_engine(model):
                    load_weights([(name, tensor)])
                    copied += 1
            finally:
                if lora:
                    model.unmerge_adapter()
        self.llm.reset_prefix_cache()
        return copied

    def sampling_params(self, max_tokens: int):
        from vllm import SamplingParams

        r = self.config.rollout
        return SamplingParams(n=self.config.samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                              top_k=r.top_k if r.top_k > 0 else -1, repetition_penalty=r.repetition_penalty,
                              max_tokens=max_tokens, min_tokens=r.min_new_tokens, stop_token_ids=self.end_ids)

    def generate(self, actor: torch.nn.Module, prompts: list, weights_version: int) -> Rollout:
        """Sample ``samples_per_prompt`` answers per prompt; syncs the weights first if they changed."""
        if self.synced_version != weights_version:
            self.sync_weights(actor)
            self.synced_version = weights_version
        c = self.config
        answer_budget = c.rollout.max_new_tokens or c.data.max_length // 2
        prompt_ids, prompt_mask, truncated = encode_prompts(self.tokenizer, prompts,
                                                            max(1, c.data.max_length - answer_budget))
        max_tokens = c.rollout.max_new_tokens or max(1, c.data.max_length - prompt_ids.size(1))
        requests = [{"prompt_token_ids": row[mask.bool()].tolist()} for row, mask in zip(prompt_ids, prompt_mask)]
        outputs = self.llm.generate(requests, self.sampling_params(max_tokens), use_tqdm=False)
        answers = [self._answer_ids(completion) for output in outputs for completion in output.outputs]
        return self.build_rollout(prompts, prompt_ids, prompt_mask, answers, truncated)

    def _answer_ids(self, completion) -> list[int]:
        """Token ids of one answer, ending with its end-of-turn token when it stopped on one."""
        ids = list(completion.token_ids)
        stop = getattr(completion, "stop_reason", None)
        if getattr(completion, "finish_reason", None) == "stop" and isinstance(stop, int) and \
                (not ids or ids[-1] != stop):
            ids.append(stop)
        return ids

    def build_rollout(self, prompts: list, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      answers: list[list[int]], truncated: int = 0) -> Rollout:
        """The same layout as :func:`.rollout.sample_rollout` from prompt blocks and answer token ids."""
        k = self.config.samples_per_prompt
        device = self.accelerator.device
        pad = self.tokenizer.pad_token_id
        width = max(1, max(len(ids) for ids in answers))
        response_ids = torch.full((len(answers), width), pad, dtype=torch.long)  # (N, T)
        for i, ids in enumerate(answers):
            response_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        response_mask = response_mask_until_end(response_ids, self.end_ids)  # (N, T)
        for i, ids in enumerate(answers):
            response_mask[i, len(ids):] = 0  # padding after an answer cut by max_tokens
        prompt_ids = prompt_ids.repeat_interleave(k, dim=0)  # (N, P)
        prompt_mask = prompt_mask.repeat_interleave(k, dim=0)
        full_mask = torch.cat([prompt_mask, response_mask], dim=1)  # (N, P + T)
        texts = self.tokenizer.batch_decode(response_ids * response_mask + pad * (1 - response_mask),
                                            skip_special_tokens=True)
        return Rollout(
            prompts=[prompt for prompt in prompts for _ in range(k)],
            input_ids=torch.cat([prompt_ids, response_ids], dim=1).to(device), attention_mask=full_mask.to(device),
            position_ids=position_ids_from_mask(full_mask).to(device), response_mask=response_mask.to(device),
            prompt_width=prompt_ids.size(1), response_texts=[t.strip() for t in texts], truncated_prompts=truncated)
