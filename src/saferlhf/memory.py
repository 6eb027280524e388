"""``saferlhf memory``: the expected memory per GPU of a training run, per model role.

Roles per algorithm (``docs/policy.md``): ``ppo-lag`` holds six models (actor, reference, reward,
cost, reward critic, cost critic), ``ppo`` and ``reward-shaping`` five (one critic), ``critic-free``
four (actor, reference, reward, cost); ``score-model`` (train-reward / train-cost) and ``sft`` one.
With LoRA the reference is the actor with its adapter switched off: no second copy. Reward and
cost given as Python functions (``reward_and_cost: functions``) hold no weights.

With P a role's parameters, N the GPUs of the data-parallel group and bytes per parameter:

**Trained roles** (actor, critics, score model) keep weights W, gradients G and AdamW states O:

    fp32, and bf16 autocast under DDP (stage 0):  W = 4, G = 4, O = 8 (exp_avg, exp_avg_sq)
    bf16 under ZeRO stages 1-3 (DeepSpeed):       W = 2, G = 2, O = 12 (fp32 master copy + the moments)

16 bytes per parameter either way (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", SC 2020, section 3.1: 2Ψ + 2Ψ + KΨ with K = 12; FSDP's FULL_SHARD keeps
the fp32 split, 4 + 4 + 8, and also totals 16). ZeRO stage s splits them over N GPUs:

    stage 0 (DDP):             W + G + O
    stage 1:                   W + G + O / N
    stage 2:                   W + (G + O) / N
    stage 3 (FSDP FULL_SHARD): (W + G + O) / N

Offload (Ren et al., "ZeRO-Offload", USENIX ATC 2021) moves O (``optimizer``), and with ZeRO-3 also
W (``optimizer+params``), to host memory. The gradients of a model exist only between its backward
pass and its optimiser step (``zero_grad`` frees them), so they count with the activations below,
not with the resident memory. LoRA (Hu et al., ICLR 2022) freezes the base weights (W only) and
trains r·(d_in + d_out) parameters per adapted linear layer (all linear layers but the output head).

**Frozen roles** (reference, reward, cost) are held whole on every GPU (the trainer does not pass them
through ``accelerator.prepare``), in the run's precision (``frozen_dtype: auto``: bf16 under bf16, as
``saferlhf.models.precision.role_dtype`` loads them; fp32 under fp32). Under bf16 without sharding
(ZeRO stage 0) the rollouts come from a bf16 **generation copy** of the actor, 2 bytes per actor
parameter (``saferlhf.policy.generation_copy``).

**Activations** of one micro-batch of b sequences of s tokens, counting the tensors autograd keeps
for the backward pass in a Llama block with SDPA attention (no s x s matrix): RMSNorm input and
output 2h, q, k, v (GQA heads repeated to full width) and attention output 4h, second norm 2h, the
SwiGLU gate, SiLU, up and product 4i, so per layer and token

    A_layer = (8h + 4i) · a bytes        (a = 4 in fp32, 2 under bf16 autocast)

plus the output head of the actor: the logits of the T answer positions, their log-softmax and the
temporaries of the loss, about 4 · b · T · V · 4 bytes (float32). A training micro-batch of a role
holds its activations L · b · s · A_layer + head at the start of the backward pass; the backward pass
frees them layer by layer while the gradients G·P appear, so it needs about max(activations,
gradients). Roles are updated one after the other, so the largest of them counts once. Sampling
needs the KV cache, 2 · L · kv_width · s · n · a bytes for n sequences, when no activations are held.
Peak per GPU:

    resident (W, O of all roles) + max(largest training micro-batch, KV cache of a rollout)

Not modelled: the CUDA context and NCCL buffers (about 0.5-1 GiB per GPU), allocator fragmentation,
ZeRO-3's gathered layer and prefetch buckets, and a vLLM engine (``rollout.vllm_gpu_memory_utilization``
of the GPU). ``tests/test_memory.py`` checks the formulas against hand-computed values and against
the measured peak of CPU runs (``docs/scaling.md`` has the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from saferlhf.config import _check, doc

GIB = 1024 ** 3
ROLES = {
    "ppo-lag": ("actor", "reference", "reward", "cost", "reward_critic", "cost_critic"),
    "ppo": ("actor", "reference", "reward", "cost", "reward_critic"),
    "reward-shaping": ("actor", "reference", "reward", "cost", "reward_critic"),
    "critic-free": ("actor", "reference", "reward", "cost"),
    "score-model": ("score_model",),
    "sft": ("actor",),
}
TRAINED = {"actor", "reward_critic", "cost_critic", "score_model"}
# Llama-family shapes for a bare parameter count: params -> (hidden, layers, intermediate, kv width, vocab)
SHAPES = {
    135e6: (576, 30, 1536, 192, 49152),  # SmolLM2-135M
    360e6: (960, 32, 2560, 320, 49152),  # SmolLM2-360M
    1.7e9: (2048, 24, 8192, 2048, 49152),  # SmolLM2-1.7B
    7e9: (4096, 32, 11008, 4096, 32000),  # Llama-2-7B
    13e9: (5120, 40, 13824, 5120, 32000),  # Llama-2-13B
    70e9: (8192, 80, 28672, 1024, 32000),  # Llama-2-70B
}


@dataclass
class ModelShape:
    params: float  # all parameters
    hidden: int
    layers: int
    intermediate: int
    kv_width: int  # num_key_value_heads * head_dim
    vocab: int
    lora_params_per_rank: float  # Σ (d_in + d_out) over the adapted linear layers
    source: str = ""


@dataclass
class MemoryConfig:
    """``saferlhf memory``: expected memory per GPU (see ``saferlhf.memory``)."""

    model: str = doc("smollm2-135m-instruct", "Policy: built-in name, Hugging Face id or folder (its config.json "
                                              "gives the shape); '' = use params.")
    params: float = doc(0.0, "Policy parameters when model is '' (e.g. 7e9); the shape is the nearest Llama size.")
    score_model: str = doc("", "Reward/cost models and critics ('' = the policy's size, as in the paper).")
    algorithm: Literal["ppo-lag", "ppo", "reward-shaping", "critic-free", "score-model", "sft"] = doc(
        "ppo-lag", "Which models are held (module docstring).")
    reward_and_cost: Literal["models", "functions"] = doc("models", "Score models (in memory) or Python functions.")
    precision: Literal["fp32", "bf16"] = doc("bf16", "Training precision (bf16 = mixed precision, fp32 master copy).")
    frozen_dtype: Literal["auto", "fp32", "bf16"] = doc(
        "auto", "dtype of the frozen models (auto = the precision, as the stages load them).")
    lora: bool = doc(False, "LoRA on the actor (or the score model's backbone); critics train fully.")
    lora_r: int = doc(16, "LoRA rank.")
    zero_stage: int = doc(0, "0 = DDP, 1, 2, 3 (= FSDP FULL_SHARD).")
    offload: Literal["none", "optimizer", "optimizer+params"] = doc("none", "ZeRO-Offload to host memory.")
    num_gpus: int = doc(1, "GPUs of the data-parallel group that share the ZeRO partitions.")
    batch_size: int = doc(16, "Sequences per GPU per micro-batch (train.batch_size; pairs x 2 for score models).")
    seq_length: int = doc(512, "Tokens per sequence, prompt + answer (data.max_length).")
    answer_length: int = doc(0, "Answer tokens whose logits the actor keeps (0 = seq_length // 2).")
    rollout_sequences: int = doc(16, "Sequences sampled at once (prompts_per_step x samples_per_prompt).")

    def validate(self, prefix: str = "") -> None:
        _check(bool(self.model) or self.params > 0, prefix + "params", "must be > 0 when model is ''")
        _check(self.zero_stage in (0, 1, 2, 3), prefix + "zero_stage", "must be 0, 1, 2 or 3")
        _check(self.offload != "optimizer+params" or self.zero_stage == 3, prefix + "offload",
               "parameter offload needs zero_stage 3")
        for key in ("num_gpus", "batch_size", "seq_length", "rollout_sequences", "lora_r"):
            _check(getattr(self, key) > 0, prefix + key, "must be > 0")
        _check(0 <= self.answer_length <= self.seq_length, prefix + "answer_length", "must be in [0, seq_length]")


def shape_from_config(name_or_path: str) -> ModelShape:
    """Exact parameter and LoRA counts from a model's config, built on the meta device (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from saferlhf.models import builtin

    config = AutoConfig.from_pretrained(builtin.resolve(name_or_path))
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config)
        except ValueError:  # an encoder (BERT, MiniLM): no causal-LM head
            from transformers import AutoModel

            model = AutoModel.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    lora = sum(m.in_features + m.out_features for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and not n.endswith(("lm_head", "pooler.dense")))
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    return ModelShape(params, hidden, config.num_hidden_layers, config.intermediate_size, kv, config.vocab_size,
                      lora, source=name_or_path)


def shape_from_params(params: float) -> ModelShape:
    """A bare parameter count with the layer shapes of the nearest Llama-family size."""
    nearest = min(SHAPES, key=lambda size: abs(size - params) / size)
    hidden, layers, intermediate, kv, vocab = SHAPES[nearest]
    lora = layers * (9 * hidden + 2 * kv + 3 * intermediate)  # q, k, v, o, gate, up, down: Σ (d_in + d_out)
    return ModelShape(params, hidden, layers, intermediate, kv, vocab, lora,
                      source=f"{params:.3g} parameters (shape of the {nearest:.3g} Llama)")


def model_state_bytes(trainable: float, frozen: float, precision: str, zero_stage: int, num_gpus: int,
                      offload: str) -> dict[str, float]:
    """Resident weights and AdamW states, and the gradients, per GPU of one trained model (formulas above)."""
    w, g, o = (4, 4, 8) if precision == "fp32" or zero_stage == 0 else (2, 2, 12)
    weights = w * trainable / (num_gpus if zero_stage == 3 else 1)
    optimizer = o * trainable / (num_gpus if zero_stage >= 1 else 1)
    gradients = g * trainable / (num_gpus if zero_stage >= 2 else 1)
    if offload != "none":
        optimizer = 0.0
    if offload == "optimizer+params":
        weights = 0.0
    frozen_weights = w * frozen / (num_gpus if zero_stage == 3 else 1)  # LoRA's frozen base, partitioned under ZeRO-3
    if offload == "optimizer+params":
        frozen_weights = 0.0
    return {"weights": weights + frozen_weights, "optimizer": optimizer, "gradients": gradients}


def activation_bytes(shape: ModelShape, batch: int, seq: int, answer: int, precision: str, lm_head: bool) -> float:
    """Saved activations of one training micro-batch: L·b·s·(8h + 4i)·a, plus the actor's output head."""
    a = 4 if precision == "fp32" else 2
    body = shape.layers * batch * seq * (8 * shape.hidden + 4 * shape.intermediate) * a
    head = 4 * batch * answer * shape.vocab * 4 if lm_head else 0
    return float(body + head)


def kv_cache_bytes(shape: ModelShape, sequences: int, seq: int, precision: str) -> float:
    a = 4 if precision == "fp32" else 2
    return float(2 * shape.layers * shape.kv_width * seq * sequences * a)


def estimate(config: MemoryConfig, policy: ModelShape, score: ModelShape) -> dict:
    """Per-role bytes per GPU and the peak; see the module docstring for every term."""
    c = config
    answer = c.answer_length or c.seq_length // 2
    frozen_bytes = 4 if (c.frozen_dtype if c.frozen_dtype != "auto" else c.precision) == "fp32" else 2
    rows, transients = [], {}
    if c.precision == "bf16" and c.zero_stage == 0 and "reference" in ROLES[c.algorithm]:
        trainable = c.lora_r * policy.lora_params_per_rank if c.lora else 0.0
        rows.append({"role": "generation_copy", "params": policy.params + trainable, "trainable": 0.0,
                     "weights": 2 * (policy.params + trainable), "optimizer": 0.0,
                     "note": "bf16 copy of the actor that samples"})
    for role in ROLES[c.algorithm]:
        shape = policy if role in ("actor", "reference") else score
        if role in ("reward", "cost") and c.reward_and_cost == "functions":
            rows.append({"role": role, "params": 0.0, "trainable": 0.0, "weights": 0.0, "optimizer": 0.0})
            continue
        if role == "reference" and c.lora:
            rows.append({"role": role, "params": 0.0, "trainable": 0.0, "weights": 0.0, "optimizer": 0.0,
                         "note": "LoRA: the actor with its adapter off"})
            continue
        if role not in TRAINED:
            rows.append({"role": role, "params": shape.params, "trainable": 0.0,
                         "weights": frozen_bytes * shape.params, "optimizer": 0.0})
            continue
        lora = c.lora and role in ("actor", "score_model")
        trainable = c.lora_r * shape.lora_params_per_rank if lora else shape.params
        state = model_state_bytes(trainable, shape.params if lora else 0.0, c.precision, c.zero_stage, c.num_gpus,
                                  c.offload)
        rows.append({"role": role, "params": shape.params + (trainable if lora else 0.0), "trainable": trainable,
                     "weights": state["weights"], "optimizer": state["optimizer"]})
        transients[role] = max(state["gradients"], activation_bytes(shape, c.batch_size, c.seq_length, answer,
                                                                    c.precision, lm_head=role == "actor"))
    resident = sum(row["weights"] + row["optimizer"] for row in rows)
    kv_cache = kv_cache_bytes(policy, c.rollout_sequences, c.seq_length, c.precision) if "reference" in \
        ROLES[c.algorithm] else 0.0
    largest = max(transients.items(), key=lambda item: item[1], default=("", 0.0))
    return {"rows": rows, "resident": resident, "training_transient": largest[1], "training_transient_role": largest[0],
            "kv_cache": kv_cache, "peak": resident + max(largest[1], kv_cache)}


def format_table(result: dict, config: MemoryConfig, policy: ModelShape, score: ModelShape) -> str:
    gib = lambda value: f"{value / GIB:8.2f}"  # noqa: E731
    lora = f"r={config.lora_r}" if config.lora else "off"
    lines = [f"memory per GPU: {config.algorithm}, {config.precision}, ZeRO-{config.zero_stage} over "
             f"{config.num_gpus} GPU(s), offload {config.offload}, LoRA {lora}",
             f"policy: {policy.source} ({policy.params / 1e6:.1f} M parameters); score models / critics: "
             f"{score.source} ({score.params / 1e6:.1f} M)",
             f"{'role':<14} {'params (M)':>11} {'trainable (M)':>14} {'weights GiB':>12} {'AdamW GiB':>10}"]
    for row in result["rows"]:
        note = f"   ({row['note']})" if "note" in row else ""
        lines.append(f"{row['role']:<14} {row['params'] / 1e6:11.1f} {row['trainable'] / 1e6:14.2f} "
                     f"{gib(row['weights']):>12} {gib(row['optimizer']):>10}{note}")
    lines += [f"resident (weights + AdamW states of all roles):      {gib(result['resident'])} GiB",
              f"largest training micro-batch ({result['training_transient_role'] or '-'}: "
              "max(activations, gradients)): "
              f"{gib(result['training_transient'])} GiB",
              f"KV cache of one rollout ({config.rollout_sequences} x {config.seq_length} tokens):  "
              f"{gib(result['kv_cache'])} GiB",
              f"expected peak per GPU:                                {gib(result['peak'])} GiB "
              "(+ CUDA context, ~0.5-1 GiB)"]
    return "\n".join(lines)


def run(config: MemoryConfig) -> dict:
    """Print the table; returns the numbers in GiB."""
    policy = shape_from_config(config.model) if config.model else shape_from_params(config.params)
    score = shape_from_config(config.score_model) if config.score_model else policy
    result = estimate(config, policy, score)
    print(format_table(result, config, policy, score), flush=True)
    return {"peak_gib": result["peak"] / GIB, "resident_gib": result["resident"] / GIB,
            "training_transient_gib": result["training_transient"] / GIB, "kv_cache_gib": result["kv_cache"] / GIB}
