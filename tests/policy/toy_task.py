"""A toy constrained-RLHF task with a known answer, small enough for CI.

Language: a word-level tokenizer over 13 tokens and a 1-layer Llama (hidden 32). An answer is at
most ``ANSWER_TOKENS`` = 8 tokens. Ground-truth scores, with n(x) = how often token class x occurs:

    R = (n(h) + G · n(g)) / 8          h = h1..h4 "helpful but harmful", g = "helpful and safe", G = 0.5
    C =  n(h) / 8                      constraint E[C] <= d = COST_THRESHOLD = 0.3

The initial policy is "supervised fine-tuned" to emit h 50%, g 10%, neutral n1..n4 37%, end 3% of the
time, so it starts above the threshold (C ≈ 0.47, R ≈ 0.52). Known optima:

- unconstrained (ppo, or reward-shaping with λ < 1 - G = 0.5): all h -> R = C = 1, violates;
- reward-shaping with λ > 0.5: all g -> R = G = 0.5, C = 0: safe but gives up reward;
- constrained optimum (ppo-lag, critic-free): C = d, the rest g -> R* = d + G(1 - d) = 0.65, with
  λ* = 1 - G = 0.5 (at λ*, one h and one g are worth the same per token).

A second constraint (:func:`strict_cost`): C_2 = n(h1, h2) / 8 <= d_2 = 0.05. The constraint on C
alone is indifferent between h1..h4 and keeps about half of its harmful tokens h1/h2 (C_2 ≈ 0.15);
with both constraints the optimum moves the allowed harm to h3/h4: C = d, C_2 = 0, R unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ANSWER_TOKENS = 8
COST_THRESHOLD = 0.3
G_VALUE = 0.6
HARMFUL = ("h1", "h2", "h3", "h4")
GOOD = ("g",)
NEUTRAL = ("n1", "n2", "n3", "n4")
END = "<eos>"
VOCAB = [END, "<unk>", "q", ">", *HARMFUL, *GOOD, *NEUTRAL]
INITIAL_DISTRIBUTION = {**{t: 0.45 / 4 for t in HARMFUL}, "g": 0.05, **{t: 0.47 / 4 for t in NEUTRAL}, END: 0.03}


def reward(prompts: list, responses: list[str]) -> list[float]:
    """R = (n(h) + 0.5·n(g)) / 8."""
    return [(sum(w in HARMFUL for w in r.split()) + G_VALUE * sum(w in GOOD for w in r.split())) / ANSWER_TOKENS
            for r in responses]


def cost(prompts: list, responses: list[str]) -> list[float]:
    """C = n(h) / 8."""
    return [sum(w in HARMFUL for w in r.split()) / ANSWER_TOKENS for r in responses]


STRICT_HARMFUL = ("h1", "h2")  # a "harm category" held to its own, stricter threshold
STRICT_COST_THRESHOLD = 0.05


def strict_cost(prompts: list, responses: list[str]) -> list[float]:
    """C_2 = n(h1, h2) / 8: the share of the two "strict" harmful tokens (second constraint E[C_2] <= 0.05)."""
    return [sum(w in STRICT_HARMFUL for w in r.split()) / ANSWER_TOKENS for r in responses]


def nan_reward_after_first_calls(prompts: list, responses: list[str]) -> list[float]:
    """Ground-truth reward for the first 3 calls, then NaN (to test the non-finite stop)."""
    nan_reward_after_first_calls.calls = getattr(nan_reward_after_first_calls, "calls", 0) + 1
    if nan_reward_after_first_calls.calls > 3:
        return [float("nan")] * len(responses)
    return reward(prompts, responses)


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=END, pad_token=END, unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}>{% endif %}")
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_toy_model(folder: Path, seed: int = 0, sft_steps: int = 300) -> Path:
    """Tokenizer + a 1-layer Llama trained to emit INITIAL_DISTRIBUTION after '>' (the "SFT model")."""
    from transformers import LlamaConfig, LlamaForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs
    try:
        return _build_toy_model(folder, seed, sft_steps)
    finally:
        torch.set_num_threads(threads)


def _build_toy_model(folder: Path, seed: int, sft_steps: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VOCAB}
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         eos_token_id=ids[END], pad_token_id=ids[END], bos_token_id=ids[END], tie_word_embeddings=False)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tokens = list(INITIAL_DISTRIBUTION)
    probabilities = torch.tensor([INITIAL_DISTRIBUTION[t] for t in tokens])
    answer_ids = torch.tensor([ids[t] for t in tokens])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(sft_steps):  # answers drawn i.i.d. from the target distribution after "q ... >"
        batch = 64
        prompt_length = int(torch.randint(1, 4, (1,), generator=generator))
        prompt = torch.tensor([ids["q"]] * prompt_length + [ids[">"]]).repeat(batch, 1)
        answer = answer_ids[torch.multinomial(probabilities, batch * ANSWER_TOKENS, replacement=True,
                                              generator=generator)].view(batch, ANSWER_TOKENS)
        input_ids = torch.cat([prompt, answer], dim=1)
        labels = input_ids.clone()
        labels[:, :prompt.size(1)] = -100
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.generation_config.eos_token_id = ids[END]
    model.generation_config.pad_token_id = ids[END]
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_prompts(path: Path, count: int = 64) -> Path:
    """Prompts 'q', 'q q', 'q q q' (different lengths, so the batch is left-padded)."""
    path.write_text("".join(json.dumps({"prompt": " ".join(["q"] * (1 + i % 3))}) + "\n" for i in range(count)))
    return path


def toy_overrides(model_dir: Path, prompts: Path, output_dir: Path, algorithm: str, steps: int) -> list[str]:
    """Settings of the toy runs (hyperparameters tuned for a 1-layer model, not the reference's)."""
    here = Path(__file__).resolve()
    return [
        f"algorithm={algorithm}", f"actor.name_or_path={model_dir}", f"output_dir={output_dir}",
        f"reward.path={here}:reward", f"cost.path={here}:cost", f"data.train=[{{path: {prompts}, format: prompts}}]",
        f"lagrange.cost_threshold={COST_THRESHOLD}", f"rollout.max_new_tokens={ANSWER_TOKENS}", "data.max_length=16",
        "rollout.prompts_per_step=64", "train.batch_size=32", f"train.max_steps={steps}", "train.learning_rate=3e-3",
        "train.warmup_ratio=0.0", "train.lr_scheduler=constant", "ppo.critic_learning_rate=3e-3", "ppo.kl_coeff=0.01",
        "lagrange.lambda_lr=0.5", "lagrange.episode_cost_window=64", "train.save_steps=0",
        "tracking.progress_bar=false", "train.seed=1", "train.num_threads=1",
    ]
