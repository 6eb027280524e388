"""``saferlhf ches``: the CHES score of every preference pair (Razin et al. 2024, arXiv 2410.08847).

"Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization" shows that DPO
can *lower* the probability of the preferred answer y⁺ (and raise unrelated, e.g. unsafe, answers)
when y⁺ and the rejected answer y⁻ have similar hidden representations. With h_{x,y<k} the model's
last-layer hidden state after the prompt x and the answer's first k - 1 tokens (the state that
predicts token k), and the sums of those states over each answer,

    H⁺ = Σ_{k=1}^{|y⁺|} h_{x,y⁺<k}        H⁻ = Σ_{k=1}^{|y⁻|} h_{x,y⁻<k}

the centered hidden embedding similarity (their Definition 2) and its length-normalised form are

    CHES(x, y⁺, y⁻)  = ⟨H⁺, H⁻⟩ - ‖H⁺‖²
    CHES~(x, y⁺, y⁻) = ⟨H⁺, H⁻⟩ / (|y⁺|·|y⁻|) - ‖H⁺‖² / |y⁺|²

A high CHES predicts strong likelihood displacement; the paper filters the highest-CHES pairs before
DPO. Here y⁺ is the pair's preferred answer by ``better_response_id`` (helpfulness) or
``safer_response_id`` (harmlessness). The answer tokens are the ones the score models and SFT train
on (:func:`saferlhf.data.templates.encode`: chat template, end-of-turn token included).

``saferlhf ches input=PAIRS.jsonl model=MODEL output=OUT.jsonl`` writes every input row with
``ches`` and ``ches_normalized`` added, in the input's order; a row without the chosen preference
label stops the command with its ``file:line``. :func:`drop_highest_ches` is the filter ``saferlhf
dpo`` applies with ``ches_drop_fraction``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from saferlhf.config import _check, doc
from saferlhf.data.adapters import to_records
from saferlhf.data.readers import read_rows
from saferlhf.data.templates import encode
from saferlhf.data.records import PreferenceRecord
from saferlhf.data.validation import validate_records
from saferlhf.models.loading import load_causal_lm, load_tokenizer


def ches_scores(chosen_hidden: torch.Tensor, rejected_hidden: torch.Tensor) -> tuple[float, float]:
    """``(CHES, length-normalised CHES)`` from the hidden states of each answer's tokens, (|y⁺|, D) and
    (|y⁻|, D) (row k = the state that predicts answer token k)."""
    if chosen_hidden.size(0) == 0 or rejected_hidden.size(0) == 0:
        raise ValueError("CHES needs at least one answer token on each side")
    chosen_sum = chosen_hidden.double().sum(dim=0)  # H⁺, (D,)
    rejected_sum = rejected_hidden.double().sum(dim=0)  # H⁻, (D,)
    inner, squared_norm = torch.dot(chosen_sum, rejected_sum).item(), torch.dot(chosen_sum, chosen_sum).item()
    chosen_length, rejected_length = chosen_hidden.size(0), rejected_hidden.size(0)
    return inner - squared_norm, inner / (chosen_length * rejected_length) - squared_norm / chosen_length ** 2


@torch.no_grad()
def answer_hidden_states(model, tokenizer, prompt, answer: str, max_length: int) -> torch.Tensor:
    """Last-layer hidden states that predict the answer's tokens, (|y|, D)."""
    encoded = encode(tokenizer, prompt, answer, max_length)
    device = next(model.parameters()).device
    input_ids = torch.tensor([encoded.input_ids], device=device)  # (1, L)
    hidden = model(input_ids=input_ids, output_hidden_states=True, use_cache=False).hidden_states[-1][0]  # (L, D)
    return hidden[encoded.prompt_length - 1:len(encoded.input_ids) - 1]  # positions P-1 .. L-2


@dataclass
class CHESConfig:
    """Configuration of ``saferlhf ches``."""

    input: str = doc("", "Preference pairs (any format saferlhf reads: pku-saferlhf, trl, hh-rlhf, ...).")
    format: str = doc("auto", "Format of the input (see docs/data.md).")
    model: str = doc("smollm2-135m-instruct", "The model about to be trained on the pairs (built-in name, hub id, "
                                              "folder).")
    preference: Literal["better", "safer"] = doc(
        "better", "Which answer is y⁺: better_response_id (helpfulness DPO) or safer_response_id (safety DPO).")
    max_length: int = doc(512, "Maximum tokens of prompt + answer (prompt cut from the left).")
    output: str = doc("", "Output jsonl: the input rows with ches and ches_normalized added.")
    progress: bool = doc(True, "Show a progress bar.")

    def validate(self, prefix: str) -> None:
        _check(bool(self.input), prefix + "input", "must name a pairs file")
        _check(bool(self.output), prefix + "output", "must name the output jsonl file")
        _check(self.max_length > 8, prefix + "max_length", "must be > 8")


def pair_ches(model, tokenizer, record: PreferenceRecord, preference: str, max_length: int) -> tuple[float, float]:
    """``(CHES, length-normalised CHES)`` of one record, y⁺ by ``better_response_id`` or ``safer_response_id``."""
    chosen = record.better_response_id if preference == "better" else record.safer_response_id
    hidden = [answer_hidden_states(model, tokenizer, record.prompt, record.response(i), max_length)
              for i in (chosen, 1 - chosen)]
    return ches_scores(*hidden)


def drop_highest_ches(model, tokenizer, records: list[PreferenceRecord], preference: str, fraction: float,
                      max_length: int, progress: bool = True) -> list[PreferenceRecord]:
    """The records without the ``fraction`` of highest CHES (the paper's filter before DPO), in their order."""
    scores = [pair_ches(model, tokenizer, r, preference, max_length)[0]
              for r in tqdm(records, desc="ches", disable=not progress)]
    dropped = set(sorted(range(len(records)), key=lambda i: -scores[i])[:int(fraction * len(records))])
    return [record for i, record in enumerate(records) if i not in dropped]


def labelled(records: list[PreferenceRecord], preference: str) -> list[PreferenceRecord]:
    """``records`` when every one has the label ``preference`` needs; else the error names the rows."""
    need = "helpfulness" if preference == "better" else "harmlessness"
    kept, _ = validate_records(records, policy="error", need=need)
    return kept


def run(config: CHESConfig) -> dict:
    rows = read_rows(config.input)
    records = labelled(to_records(rows, config.format, config.input), config.preference)
    tokenizer = load_tokenizer(config.model)
    model = load_causal_lm(config.model).eval()
    scored = []
    for raw, record in tqdm(list(zip(rows, records)), desc="ches", disable=not config.progress):
        ches, normalized = pair_ches(model, tokenizer, record, config.preference, config.max_length)
        scored.append({**raw.row, "ches": ches, "ches_normalized": normalized})
    Path(config.output).parent.mkdir(parents=True, exist_ok=True)
    Path(config.output).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in scored))
    values = sorted(row["ches"] for row in scored)
    return {"pairs": len(scored), "ches_median": values[len(values) // 2] if values else None,
            "output": config.output}
