"""The model card (``README.md``) written into every folder that holds a model, and the push to the Hub.

A card says what produced the model (the command line, the configuration, the data sources and the
base model), its metrics, how to load it, and the cost-sign convention, so a folder found later (or on
the Hub) explains itself. The YAML front matter is the Hub's model-card metadata (``base_model``,
``tags``, ``library_name``). :func:`publish` writes the card and, when the stage's ``hub`` section asks
for it, uploads the folder with ``huggingface_hub`` (``create_repo`` + ``upload_folder``).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import yaml

COST_SIGN = ("Cost models score C > 0 for unsafe answers (higher = more harmful) and C <= 0 for safe ones; "
             "reward models score higher for more helpful answers. A Lagrangian policy keeps E[C] <= d.")

KINDS = {  # kind -> (title, how to load it)
    "sft": ("Supervised fine-tuned policy", "AutoModelForCausalLM.from_pretrained(folder)"),
    "reward": ("Reward model (helpfulness)", "AutoModelForSequenceClassification.from_pretrained(folder) "
               "(one label; or saferlhf's ScoreModel.from_pretrained)"),
    "cost": ("Cost model (harmfulness)", "AutoModelForSequenceClassification.from_pretrained(folder) "
             "(one label; or saferlhf's ScoreModel.from_pretrained)"),
    "policy": ("Policy trained with Safe RLHF", "AutoModelForCausalLM.from_pretrained(folder)"),
    "dpo": ("Policy trained with DPO / SACPO", "AutoModelForCausalLM.from_pretrained(folder)"),
    "refusal-ablated": ("Policy with the refusal direction ablated from its weights",
                        "AutoModelForCausalLM.from_pretrained(folder)"),
    "pipeline-final": ("Final policy of a saferlhf pipeline run", "AutoModelForCausalLM.from_pretrained(folder)"),
    "refusal-classifier": ("Refusal classifier", "saferlhf.refusal.classifier.RefusalClassifier.from_pretrained(folder)"),
}
MAX_METRICS = 40


def command_line() -> str:
    """How this process was started (``saferlhf <command> ...`` from the CLI)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("saferlhf", "__main__.py", "cli.py"):
        argv[0] = "saferlhf"
    return shlex.join(argv)


def render(kind: str, base_model: str = "", data: list[str] | None = None, metrics: dict | None = None,
           config: dict | None = None, notes: str = "", how_to_load: str = "") -> str:
    """The card's Markdown text (``how_to_load`` overrides the kind's usual loading line)."""
    if kind not in KINDS:
        raise ValueError(f"model card: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    title, how_to_load = KINDS[kind][0], how_to_load or KINDS[kind][1]
    from saferlhf import __version__

    front = {"library_name": "transformers", "tags": ["saferlhf", "safe-rlhf", kind]}
    if base_model and base_model.count("/") == 1 and not Path(base_model).exists():
        front["base_model"] = base_model  # a hub id; local folders and built-in names are not Hub references
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {title}", "",
             f"Produced by `{command_line()}` (saferlhf {__version__}) on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"- Base model: `{base_model or 'n/a'}`",
             f"- Data: {', '.join(f'`{d}`' for d in data) if data else 'n/a'}",
             f"- Load: `{how_to_load}`", "", "## Cost-sign convention", "", COST_SIGN, ""]
    if notes:
        lines += [notes, ""]
    scalars = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    if scalars:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in list(scalars.items())[:MAX_METRICS]]
        if len(scalars) > MAX_METRICS:
            lines.append(f"| ... | {len(scalars) - MAX_METRICS} more in metrics.json |")
        lines.append("")
    canary = (metrics or {}).get("canary")
    if canary:
        lines += ["## Sign canary", "", "```json", json.dumps(canary, indent=2), "```", ""]
    if config:
        lines += ["## Configuration", "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, kind: str, **fields) -> Path:
    """Write ``folder/README.md`` (fields: see :func:`render`)."""
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(kind, **fields), encoding="utf-8")
    return path


def push_folder(folder: str | Path, hub) -> str:
    """Upload ``folder`` to ``hub.hub_model_id`` (created when missing); returns the repository's URL."""
    if not hub.hub_model_id:
        raise ValueError("hub.push_to_hub is true but hub.hub_model_id is empty: set it to owner/name")
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(hub.hub_model_id, private=hub.hub_private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=hub.hub_model_id,
                      commit_message=f"saferlhf: {command_line()}"[:200],
                      ignore_patterns=["checkpoint*", "checkpoints/*", "*.tmp*"])
    return str(url)


def publish(folder: str | Path, kind: str, hub=None, **fields) -> dict:
    """Write the card; push the folder when ``hub.push_to_hub``. Returns what was done (for metrics)."""
    done = {"model_card": str(write_model_card(folder, kind, **fields))}
    if hub is not None and hub.push_to_hub:
        done["hub_url"] = push_folder(folder, hub)
        print(f"[saferlhf] pushed {folder} to {done['hub_url']}", flush=True)
    return done
