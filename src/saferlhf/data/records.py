"""The decoupled preference record (Safe RLHF section 1; PKU-SafeRLHF schema).

One record = one prompt and two responses with two independent judgements:
``better_response_id`` (which is more helpful) and ``safer_response_id`` (which is more harmless),
plus an absolute safety label per response. Sources that answer only one question leave the other
fields ``None``: a helpfulness-only set gives ``better_response_id``; Anthropic hh-rlhf
harmless-base gives ``safer_response_id`` only.

``prompt`` is either a plain string (one user turn) or a list of chat messages
(``{"role": "user"|"assistant"|"system", "content": str}``) ending with a user turn, as in
multi-turn hh-rlhf transcripts. It is rendered with the model's chat template at tokenisation time.

An *unpaired* record (``unpaired=True``: TRL's unpaired ``prompt``/``completion``/``label`` rows,
BeaverTails' ``prompt``/``response``/``is_safe`` rows) holds one response with an absolute safety
label and no ranking: ``response_1`` repeats ``response_0`` and only the cost model's sign term
learns from it (:func:`saferlhf.training.score_losses.cost_loss`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

Message = dict  # {"role": str, "content": str}
Prompt = Union[str, list]


@dataclass
class PreferenceRecord:
    prompt: Prompt
    response_0: str
    response_1: str
    better_response_id: int | None = None
    safer_response_id: int | None = None
    is_response_0_safe: bool | None = None
    is_response_1_safe: bool | None = None
    response_0_harm_category: dict[str, bool] | None = None
    response_1_harm_category: dict[str, bool] | None = None
    response_0_severity_level: int | None = None
    response_1_severity_level: int | None = None
    unpaired: bool = False  # one response with an absolute safety label (response_1 = response_0), no ranking
    source: str = ""  # "file:line" or "dataset-id[split]:index", for error messages and reports
    extra: dict[str, Any] = field(default_factory=dict)

    def response(self, index: int) -> str:
        return self.response_1 if index == 1 else self.response_0

    def is_safe(self, index: int) -> bool | None:
        return self.is_response_1_safe if index == 1 else self.is_response_0_safe

    @property
    def has_helpfulness(self) -> bool:
        return self.better_response_id is not None

    @property
    def has_harmlessness(self) -> bool:
        return self.safer_response_id is not None

    def to_dict(self) -> dict[str, Any]:
        """The record's fields (``unpaired`` only when set, so that pair files keep the PKU-SafeRLHF columns)."""
        fields = asdict(self)
        if not self.unpaired:
            del fields["unpaired"]
        return fields


def prompt_messages(prompt: Prompt) -> list[Message]:
    """The prompt as a list of chat messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def prompt_text(prompt: Prompt) -> str:
    """Plain text of the prompt (last user turn for conversations), for display and detectors."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""
