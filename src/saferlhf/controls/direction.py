"""The refusal direction (Arditi et al. 2024, "Refusal in language models is mediated by a single
direction"; reference code andyrdt/refusal_direction): find it, measure it, remove it, add it.

- **Difference in means.** With x_l(p, i) the input of decoder block l (the residual stream) at the
  i-th post-instruction position of prompt p (the chat-template tokens after the user's text, e.g.
  ``<|im_end|>\\n<|im_start|>assistant\\n`` for SmolLM2), ``r_{i,l} = mean_{harmful} x_l(p, i) −
  mean_{harmless} x_l(p, i)``, accumulated in float64 for every layer and every such position.
- **Projection** ``x · r̂`` with r̂ = r / ‖r‖.
- **Directional ablation** ``x ← x − (x · r̂) r̂`` at every block input and every attention / MLP
  output, all positions (forward hooks, :func:`ablation_hooks`). The same map in the weights
  (:func:`orthogonalize_weights`): ``W ← W − r̂ r̂ᵀ W`` for each matrix that writes to the residual
  stream (attention output and MLP down projections, and the token embedding), after untying a tied
  output embedding so that the unembedding keeps reading the full stream.
- **Activation addition** ``x ← x + α r`` at the input of one block l, all positions
  (:func:`addition_hooks`; α = 1 in the reference).
- **Refusal score**: log-odds of the summed probability of the refusal-opening tokens R at the last
  position, ``log p_R − log(1 − p_R)`` with ``p_R = Σ_{t∈R} softmax(logits)_t``; R comes from what
  the model emits when it refuses (:func:`refusal_token_ids`).

Architectures: decoder LMs whose blocks are ``model.get_decoder().layers[l]`` with ``self_attn`` (its
output projection ``o_proj``) and ``mlp`` (``down_proj``): Llama, Mistral, Qwen2/3, Gemma, SmolLM2.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

from saferlhf.data.templates import render_prompt

MARKER = "\x00INSTRUCTION\x00"  # stands in for the user's text when the template is rendered
EPS = 1e-8  # reference value, keeps the log-odds finite when p_R is 0 or 1


# --------------------------------------------------------------------------------------------
# Prompts and activations


def post_instruction_ids(tokenizer) -> list[int]:
    """Token ids the chat template puts after the user's text (the candidate positions)."""
    text = render_prompt(tokenizer, MARKER)
    if text.count(MARKER) != 1:
        raise ValueError("the chat template does not render the user's text exactly once")
    return tokenizer(text.split(MARKER)[1], add_special_tokens=False)["input_ids"]


def encode_prompts(tokenizer, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Chat-templated prompts, left-padded (so every prompt ends at position -1); (B, T) tensors.

    Checks that each prompt ends with the post-instruction tokens, so position -k means the same
    template token for every prompt.
    """
    texts = [render_prompt(tokenizer, prompt) for prompt in prompts]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    suffix = torch.tensor(post_instruction_ids(tokenizer))
    ends = batch["input_ids"][:, -len(suffix):]
    bad = [i for i in range(len(prompts)) if not torch.equal(ends[i], suffix)]
    if bad:
        raise ValueError(f"prompt {prompts[bad[0]][:60]!r}: its last tokens are not the template's post-instruction "
                         "tokens (the text merged with them when tokenised)")
    return batch


@torch.no_grad()
def block_inputs(model, tokenizer, prompts: list[str], positions: list[int], batch_size: int = 16) -> torch.Tensor:
    """(N, L, P, d) float64: the input of every decoder block at ``positions`` (negative indices)."""
    n_layers = len(decoder_layers(model))
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_prompts(tokenizer, prompts[start:start + batch_size]).to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states  # L + 1 of (B, T, d); [l] enters block l
        chunks.append(torch.stack([hidden[layer][:, positions] for layer in range(n_layers)], dim=1).double().cpu())
    return torch.cat(chunks)


@torch.no_grad()
def last_logits(model, tokenizer, prompts: list[str], batch_size: int = 16) -> torch.Tensor:
    """(N, V) float32 logits at the last position of each templated prompt (under any active hooks)."""
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = encode_prompts(tokenizer, prompts[start:start + batch_size]).to(device)
        rows.append(model(**batch).logits[:, -1].float().cpu())
    return torch.cat(rows)


# --------------------------------------------------------------------------------------------
# The algebra


def difference_in_means(harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """``mean_harmful − mean_harmless`` over the first (prompt) dimension, in float64."""
    return harmful.double().mean(dim=0) - harmless.double().mean(dim=0)


def unit(direction: torch.Tensor) -> torch.Tensor:
    norm = direction.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("the direction is zero (or not finite): harmful and harmless activations have equal means")
    return direction / norm


def project(activations: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Scalar projection ``x · r̂`` over the last dimension."""
    r_hat = unit(direction.double()).to(activations.dtype)
    return activations @ r_hat


def ablate(activations: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``x − (x · r̂) r̂``: the component along r removed (idempotent; the result is orthogonal to r)."""
    r_hat = unit(direction.double()).to(activations.dtype)
    return activations - (activations @ r_hat).unsqueeze(-1) * r_hat


def refusal_scores(logits: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """(N,) float64 log-odds ``log(p_R + ε) − log(1 − p_R + ε)`` of the refusal tokens, from (N, V) logits."""
    probs = torch.softmax(logits.double(), dim=-1)
    p_refusal = probs[:, token_ids].sum(dim=-1)
    return torch.log(p_refusal + EPS) - torch.log(1 - p_refusal + EPS)


def kl_divergence(base_logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """(N,) ``KL(p_base ‖ p_other)`` of the next-token distributions, in float64."""
    base, other = torch.log_softmax(base_logits.double(), -1), torch.log_softmax(other_logits.double(), -1)
    return (base.exp() * (base - other)).sum(dim=-1)


def refusal_token_ids(tokenizer, refusals: list[str], compliances: list[str]) -> list[int]:
    """The tokens this model opens its refusals with: the first token of each refusal answer, minus
    tokens that open at least as many compliant answers (an "I" that starts "I'd be happy to" as
    often as "I can't" tells nothing). Most frequent first."""
    def first_tokens(answers):
        return Counter(ids[0] for ids in (tokenizer(a.strip(), add_special_tokens=False)["input_ids"]
                                          for a in answers if a.strip()) if ids)

    refusing, complying = first_tokens(refusals), first_tokens(compliances)
    return [token for token, count in refusing.most_common() if count > complying.get(token, 0)]


# --------------------------------------------------------------------------------------------
# Interventions: hooks and weights


def decoder_layers(model) -> torch.nn.ModuleList:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in layers):
        raise ValueError(f"{type(model).__name__}: refusal-direction interventions need a decoder whose blocks "
                         "are get_decoder().layers[l] with self_attn and mlp (Llama-style)")
    return layers


def _edit_input(edit):
    def hook(module, args, kwargs):
        if args:
            return (edit(args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}
    return hook


def _edit_output(edit):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (edit(output[0]),) + output[1:]
        return edit(output)
    return hook


@contextmanager
def _hooks(registrations):
    handles = [register(hook) for register, hook in registrations]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def ablation_hooks(model, direction: torch.Tensor):
    """Context manager: directional ablation at every block input and attention / MLP output."""
    r_hat = unit(direction.double())

    def edit(x):
        r = r_hat.to(device=x.device, dtype=x.dtype)
        return x - (x @ r).unsqueeze(-1) * r

    registrations = []
    for layer in decoder_layers(model):
        registrations.append((lambda h, m=layer: m.register_forward_pre_hook(h, with_kwargs=True), _edit_input(edit)))
        for part in (layer.self_attn, layer.mlp):
            registrations.append((part.register_forward_hook, _edit_output(edit)))
    return _hooks(registrations)


def addition_hooks(model, direction: torch.Tensor, layer: int, coefficient: float = 1.0):
    """Context manager: ``x + coefficient · r`` at the input of block ``layer``, all positions."""
    block = decoder_layers(model)[layer]

    def edit(x):
        return x + coefficient * direction.to(device=x.device, dtype=x.dtype)

    return _hooks([(lambda h: block.register_forward_pre_hook(h, with_kwargs=True), _edit_input(edit))])


def untie_output_embedding(model) -> None:
    """Give the LM head its own copy of a tied (shared) embedding matrix and mark the config untied."""
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() == embedding.weight.data_ptr():
        head.weight = torch.nn.Parameter(embedding.weight.detach().clone())
    model.config.tie_word_embeddings = False
    model.config.get_text_config().tie_word_embeddings = False  # the same object for text-only models


def _output_projections(layer) -> list[torch.nn.Linear]:
    found = [getattr(part, name) for part, name in ((layer.self_attn, "o_proj"), (layer.mlp, "down_proj"))
             if isinstance(getattr(part, name, None), torch.nn.Linear)]
    if len(found) != 2:
        raise ValueError(f"{type(layer).__name__}: weight orthogonalisation needs self_attn.o_proj and mlp.down_proj")
    return found


@torch.no_grad()
def orthogonalize_weights(model, direction: torch.Tensor) -> None:
    """Directional ablation in the weights, in place: ``W ← W − r̂ r̂ᵀ W`` on every matrix writing to the
    residual stream (biases ``b ← b − (b · r̂) r̂``), rows of the token embedding ``e ← e − (e · r̂) r̂``.
    The output embedding is untied first (it must keep reading the unablated stream's basis)."""
    untie_output_embedding(model)
    r_hat = unit(direction.double())
    embedding = model.get_input_embeddings().weight  # (V, d)
    embedding.copy_(ablate(embedding.double(), r_hat).to(embedding.dtype))
    for layer in decoder_layers(model):
        for linear in _output_projections(layer):
            weight = linear.weight.double()  # (d, k): output = W x
            linear.weight.copy_((weight - torch.outer(r_hat, r_hat @ weight)).to(linear.weight.dtype))
            if linear.bias is not None:
                linear.bias.copy_(ablate(linear.bias.double(), r_hat).to(linear.bias.dtype))
