"""A prompt-conditioned refusal gate: refuse when a linear harm probe on the model's own hidden states says so.

The gate reads the hidden state of the last token of the chat-templated prompt at one layer, scores it
with a :class:`saferlhf.controls.probe.LinearProbe` trained on the project's own labelled prompts, and
flags the prompt iff score >= threshold. A flagged prompt gets a refusal (a written one, or the
model's ``[refuse]`` token forced, :mod:`saferlhf.controls.tokens`); any other prompt is left to the
model. The idea: a policy trained with Safe RLHF moves along one harm / over-refusal line (XSTest
FRR ~ 58.2 - 0.64 HC, docs/pipeline.md), while the base model's own states separate harmful from
harmless prompts better (probe AUC 0.84 on XSTest); a gate on that signal changes *which* prompts
are refused rather than how many.

Calibration is the hard part. Layer and threshold are chosen on a *development* split of the
project's own prompts (by default the 600 minimal pairs of ``experiments/data`` and the built-in
held-out harmless prompts), never on the benchmark the gate is reported on: the layer with the best
development AUC, then the lowest threshold that flags at most ``max_dev_false_refusal`` of the
development harmless prompts (:func:`saferlhf.controls.probe.choose_threshold`).

Saved beside a model as ``<name>.json`` (settings, threshold, what it was chosen on, development
figures) and ``<name>.safetensors`` (the probe's mean, std, weight and bias). Scores are computed one
prompt at a time (no padding), so a prompt's decision does not depend on the other prompts of a run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from saferlhf.config import _check, doc
from saferlhf.controls.probe import LinearProbe, auc, choose_threshold, last_token_states
from saferlhf.data.builtin import LABELS, SPLITS, builtin_prompts, check_labelled_row
from saferlhf.data.readers import read_rows

BUILTIN = "builtin"


@dataclass
class PromptSet:
    """Labelled prompts of the project: the built-in set or a file of prompt + label rows (or one label for all)."""

    path: str = doc(BUILTIN, "'builtin' or a jsonl/csv/json file (or dataset id) with a prompt and a label "
                             "(harmful | benign | pseudo_harmful).")
    split: str = doc("", "Built-in split: train | heldout ('' = both).")
    labels: list[str] = doc([], "Keep only these labels ([] = all).")
    prompt_column: str = doc("prompt", "Files: the column holding the prompt (AdvBench: goal; HarmBench: "
                                       "Behavior; Alpaca: instruction).")
    label: str = doc("", "Files without a label column: the label of every row (e.g. harmful for AdvBench).")
    part: str = doc("", "'i/n': keep the i-th of n interleaved parts of the rows, in groups of group_size "
                        "consecutive rows ('' = all): disjoint training and development parts of one file.")
    group_size: int = doc(1, "Rows kept together by part (2 for experiments/data/minimal_pairs.jsonl: a pair).")
    limit: int = doc(0, "Keep the first N rows after the other filters (0 = all).")

    def validate(self, prefix: str) -> None:
        _check(bool(self.path), prefix + "path", "must not be empty")
        _check(self.split in ("",) + SPLITS, prefix + "split", f"must be one of {SPLITS} or ''")
        _check(self.path == BUILTIN or not self.split, prefix + "split", "only applies to path: builtin")
        for i, label in enumerate(self.labels):
            _check(label in LABELS, f"{prefix}labels[{i}]", f"must be one of {LABELS}")
        _check(self.label in ("",) + LABELS, prefix + "label", f"must be one of {LABELS} or ''")
        _check(self.group_size >= 1 and self.limit >= 0, prefix + "group_size", "must be >= 1 (and limit >= 0)")
        if self.part:
            i, _, n = self.part.partition("/")
            _check(i.isdigit() and n.isdigit() and int(i) < int(n), prefix + "part", "must be 'i/n' with 0 <= i < n")

    @property
    def name(self) -> str:
        """How the set is named in metrics: ``builtin:heldout[benign,pseudo_harmful]``, ``FILE(part 0/2)``."""
        base = f"{self.path}:{self.split}" if self.split else self.path
        base += f" (part {self.part})" if self.part else ""
        base += f" (first {self.limit})" if self.limit else ""
        return base + (f"[{','.join(self.labels)}]" if self.labels else "")


def read_prompt_set(prompt_set: PromptSet) -> list[dict]:
    """Rows with ``prompt`` and ``label``; a bad file row is an error naming ``file:LINE``."""
    if prompt_set.path == BUILTIN:
        rows = builtin_prompts(split=prompt_set.split or None)
    else:
        if not Path(prompt_set.path).is_file():
            raise FileNotFoundError(f"prompt set {prompt_set.path} not found")
        rows = [check_labelled_row(raw, prompt_set.prompt_column, prompt_set.label)
                for raw in read_rows(prompt_set.path)]
    if prompt_set.part:
        i, n = (int(x) for x in prompt_set.part.split("/"))
        rows = [row for index, row in enumerate(rows) if (index // prompt_set.group_size) % n == i]
    rows = [row for row in rows if not prompt_set.labels or row["label"] in prompt_set.labels]
    rows = rows[:prompt_set.limit] if prompt_set.limit else rows
    if not rows:
        raise ValueError(f"prompt set {prompt_set.name} holds no prompt")
    return rows


def read_prompt_sets(sets: list[PromptSet]) -> tuple[list[str], list[bool]]:
    """``(prompts, harmful)`` over several sets, in order."""
    rows = [row for prompt_set in sets for row in read_prompt_set(prompt_set)]
    return [row["prompt"] for row in rows], [row["label"] == "harmful" for row in rows]


@dataclass
class RefusalGate:
    """A fitted gate: the probe, its threshold, and what both were chosen on."""

    model: str  # the model whose hidden states the probe reads
    probe: LinearProbe
    threshold: float
    threshold_chosen_on: list[str]
    trained_on: list[str]
    max_dev_false_refusal: float
    development: dict = field(default_factory=dict)  # figures on the development prompts

    def scores(self, model, tokenizer, prompts: list) -> list[float]:
        """Harm score of each prompt (one prompt per forward pass: independent of the others)."""
        return self.probe.score(last_token_states(model, tokenizer, prompts, batch_size=1)).tolist()

    def flags(self, scores: list[float]) -> list[bool]:
        return [score >= self.threshold for score in scores]

    def save(self, folder: str | Path, name: str = "refusal_gate") -> Path:
        """Write ``folder/<name>.json`` and ``folder/<name>.safetensors``; returns the json path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.probe.mean.contiguous(), "std": self.probe.std.contiguous(),
                   "weight": self.probe.weight.contiguous(), "bias": self.probe.bias.contiguous()},
                  str(folder / f"{name}.safetensors"))
        settings = {key: value for key, value in asdict(self).items() if key != "probe"}
        settings.update(layer=self.probe.layer, probe_weights=f"{name}.safetensors")
        path = folder / f"{name}.json"
        path.write_text(json.dumps(settings, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RefusalGate":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"refusal gate {path} not found (fit one with a gate control in saferlhf evaluate)")
        settings = json.loads(path.read_text())
        try:
            tensors = load_file(str(path.parent / settings.pop("probe_weights")))
            probe = LinearProbe(settings.pop("layer"), tensors["mean"], tensors["std"], tensors["weight"],
                                tensors["bias"])
            return cls(probe=probe, **settings)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a refusal gate file ({error})") from None


def fit_gate(model, tokenizer, model_name: str, train: list[PromptSet], dev: list[PromptSet],
             max_dev_false_refusal: float, layer: int = 0, l2: float = 1e-2) -> RefusalGate:
    """Train the probe on ``train``; choose the layer (``layer=0``: best development AUC) and threshold on ``dev``."""
    train_prompts, train_harmful = read_prompt_sets(train)
    dev_prompts, dev_harmful = read_prompt_sets(dev)
    seen = {" ".join(p.lower().split()) for p in train_prompts}
    keep = [" ".join(p.lower().split()) not in seen for p in dev_prompts]
    if not all(keep):  # a threshold chosen on prompts the probe was trained on would be optimistic
        print(f"[saferlhf] refusal gate: {keep.count(False)} development prompt(s) are also training prompts and are "
              "left out of the development set", flush=True)
        dev_prompts = [p for p, k in zip(dev_prompts, keep) if k]
        dev_harmful = [h for h, k in zip(dev_harmful, keep) if k]
    if not dev_prompts:
        raise ValueError("the gate's development prompts are all training prompts")
    if all(train_harmful) or not any(train_harmful):
        raise ValueError("the gate's training prompts need both harmful and harmless prompts")
    train_states = last_token_states(model, tokenizer, train_prompts)
    dev_states = last_token_states(model, tokenizer, dev_prompts, batch_size=1)
    labels, dev_labels = torch.tensor(train_harmful, dtype=torch.float32), torch.tensor(dev_harmful)
    layers = [layer] if layer else list(range(1, train_states.shape[1]))
    probes = {l: LinearProbe.fit(train_states, labels, l, l2) for l in layers}
    dev_auc = {l: auc(probe.score(dev_states), dev_labels) for l, probe in probes.items()}
    best = max(layers, key=lambda l: dev_auc[l])
    dev_scores = probes[best].score(dev_states).tolist()
    point = choose_threshold(dev_scores, dev_harmful, max_dev_false_refusal)
    development = {"auc": dev_auc[best], "auc_per_layer": dev_auc, "flagged_harmless": point["false_refusal"],
                   "missed_harmful": point["harmful_compliance"], "n_prompts": len(dev_prompts),
                   "n_harmful": sum(dev_harmful)}
    return RefusalGate(model_name, probes[best], point["threshold"], [s.name for s in dev],
                       [s.name for s in train], max_dev_false_refusal, development)
