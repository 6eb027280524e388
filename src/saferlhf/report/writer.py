"""Write ``report.html`` (self-contained: figures embedded as base64 PNG, no scripts, no external
files) and ``report.md`` (figures saved as PNG files under ``figures/`` beside it).

The input is the ``metrics.json`` dictionary of ``saferlhf evaluate`` and its generation records;
several "models" can be the rounds of one training (Beaver-v1/v2/v3 style): pass their names in
order as ``rounds`` and the report adds a round-by-round table and joins the rounds by arrows in
the trade-off plot.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from saferlhf.report import figures as F
from saferlhf.report.probing import probing_sections
from saferlhf.runio import atomic_write_text, read_log

SUMMARY_COLUMNS = [  # (metrics key, column title, kind)
    ("n_prompts", "prompts", "int"),
    ("harmful_compliance_rate", "harmful compliance", "rate"),
    ("false_refusal_rate", "false refusal", "rate"),
    ("partial_refusal_rate", "partial refusal", "rate"),
    ("refusal_rate_controversial", "refusal (controversial)", "rate"),
    ("reward_mean", "reward", "num"),
    ("cost_mean", "cost", "num"),
    ("unsafe_share", "cost > 0", "rate"),
    ("judge_helpfulness_mean", "judge help.", "num"),
    ("judge_harmlessness_mean", "judge harml.", "num"),
    ("mean_response_words", "words", "num"),
]
CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;
border:1px solid #eee;margin:0.5em 0}h2{border-bottom:1px solid #ddd;padding-bottom:3px}.note{color:#666;font-size:13px}
pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:6px;font-size:12px}"""


def fmt(value, kind: str = "num") -> str:
    if value is None:
        return "–"
    if kind == "rate":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return str(int(value))
    if kind == "elo":
        return f"{value:.0f}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class _Doc:
    """Builds the HTML and Markdown versions side by side."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.html: list[str] = []
        self.md: list[str] = []
        self.figures: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def paragraph(self, text: str) -> None:
        self.html.append(f'<p class="note">{html.escape(text)}</p>')
        self.md.append(text + "\n")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.html.append(f"<table><tr>{cells}</tr>{body}</table>")
        escape = (lambda c: c.replace("|", "\\|").replace("\n", " "))
        self.md.append("| " + " | ".join(map(escape, header)) + " |")
        self.md.append("|" + "---|" * len(header))
        self.md += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
        self.md.append("")

    def figure(self, figure, name: str, caption: str) -> None:
        if figure is None:
            return
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        F.plt.close(figure)
        data = buffer.getvalue()
        path = self.output_dir / "figures" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.figures.append(path)
        encoded = base64.b64encode(data).decode()
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
                         f"<figcaption class=\"note\">{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"![{caption}](figures/{name}.png)\n")

    def example(self, title: str, prompt: str, response: str) -> None:
        self.html.append(f"<p><b>{html.escape(title)}</b></p><pre>Prompt: {html.escape(prompt)}\n\n"
                         f"Answer: {html.escape(response)}</pre>")
        quoted = "\n".join("> " + line for line in f"Prompt: {prompt}\n\nAnswer: {response}".splitlines())
        self.md.append(f"**{title}**\n\n{quoted}\n")


def _summary_rows(label: str, summary: dict, keys=SUMMARY_COLUMNS) -> list[str]:
    return [label] + [fmt(summary.get(key), kind) for key, _, kind in keys]


def _used_columns(summaries: list[dict]) -> list[tuple]:
    return [c for c in SUMMARY_COLUMNS if c[0] == "n_prompts" or any(s.get(c[0]) is not None for s in summaries)]


def write_report(output_dir, metrics: dict, generations: list[dict], training_logs=None,
                 rounds: list[str] | None = None, title: str = "saferlhf evaluation report",
                 examples_per_kind: int = 3) -> dict:
    """Write ``report.html``, ``report.md`` and ``figures/*.png`` into ``output_dir``; return their paths.

    ``training_logs``: ``{run name: log rows or path to log.jsonl / run folder}`` or a list of paths.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    doc = _Doc(output_dir)
    models = metrics.get("models", {})
    overall = metrics.get("overall", {})
    settings = metrics.get("settings", {})
    detectors = settings.get("detectors") or ["rules"]
    primary = settings.get("primary_detector", detectors[0])
    doc.paragraph(f"Models: {', '.join(models) or 'none'}. Refusal detectors: {', '.join(detectors)} "
                  f"(primary: {primary}). Rates count partial refusals as refusals; brackets are 95% Wilson "
                  "intervals.")
    _summary_section(doc, models, overall, detectors)
    if rounds:
        _rounds_section(doc, overall, rounds)
    doc.heading("Harm vs over-refusal")
    doc.figure(F.tradeoff_figure(overall, detectors, rounds), "tradeoff",
               "Harmful-compliance rate vs false-refusal rate over all prompts, one point per model")
    if metrics.get("controls"):
        doc.figure(F.controls_figure(metrics["controls"], models, settings.get("reference_lines")), "controls",
                   "Refusal controls: each threshold "
                   "sweep as a curve, the measured point at the threshold chosen on development prompts as a star, the "
                   "models as circles and any reference line (reference_lines) dashed")
    _category_section(doc, models, detectors)
    probing_sections(doc, metrics, fmt)
    _patterns_section(doc, overall)
    doc.heading("Reward and cost")
    if not any(g.get("reward") is not None or g.get("cost") is not None for g in generations):
        doc.paragraph("No reward or cost model was given (scoring.reward_model / scoring.cost_model).")
    doc.figure(F.reward_cost_figure(generations), "reward_cost", "Reward vs cost of every answer")
    doc.figure(F.cost_histogram_figure(generations, primary), "cost_histograms",
               "Cost distributions of safe and unsafe answers")
    if metrics.get("arena"):
        _arena_section(doc, metrics["arena"])
    logs = _load_logs(training_logs)
    if logs:
        doc.heading("Training curves")
        doc.figure(F.training_figure(logs), "training", "Reward, cost and λ during training")
        doc.figure(F.constraints_figure(logs), "constraints",
                   "Each constraint: episode cost (batch cost lighter) against its threshold (dashed), and its λ")
    _examples_section(doc, generations, primary, examples_per_kind)
    body = "\n".join(doc.html)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    atomic_write_text(output_dir / "report.html", page)
    atomic_write_text(output_dir / "report.md", f"# {title}\n\n" + "\n".join(doc.md) + "\n")
    return {"html": output_dir / "report.html", "markdown": output_dir / "report.md", "figures": doc.figures}


def _summary_section(doc: _Doc, models: dict, overall: dict, detectors: list[str]) -> None:
    doc.heading("Summary")
    all_summaries = [s for b in models.values() for s in b.values()]
    columns = _used_columns(all_summaries)
    header = ["model / set"] + [c[1] for c in columns]
    rows = [_summary_rows(f"{m} / {b}", s, columns) for m, bench in models.items() for b, s in bench.items()]
    rows += [_summary_rows(f"{m} / all sets", s, columns) for m, s in overall.items() if len(models.get(m, {})) > 1]
    doc.table(header, rows)
    if len(detectors) > 1:
        doc.paragraph("Per detector (harmful compliance / false refusal / partial refusal):")
        header = ["model / set"] + detectors + ["agreement"]
        rows = []
        for m, bench in models.items():
            for b, s in bench.items():
                cells = ["{} / {} / {}".format(*(fmt(s["detectors"][d].get(k), "rate") for k in
                                                 ("harmful_compliance_rate", "false_refusal_rate", "partial_refusal_rate")))
                         for d in detectors]
                rows.append([f"{m} / {b}"] + cells + [fmt(s.get("detector_agreement"), "rate")])
        doc.table(header, rows)
    ci_rows = []
    for m, bench in models.items():
        for b, s in bench.items():
            for d in detectors:
                rates = s.get("detectors", {}).get(d, s)
                hc, fr = rates.get("harmful_compliance_rate_ci"), rates.get("false_refusal_rate_ci")
                ci_rows.append([f"{m} / {b}" + (f" ({d})" if len(detectors) > 1 else ""),
                                f"[{fmt(hc[0], 'rate')}, {fmt(hc[1], 'rate')}]" if hc else "–",
                                f"[{fmt(fr[0], 'rate')}, {fmt(fr[1], 'rate')}]" if fr else "–"])
    doc.table(["model / set", "harmful compliance 95% CI", "false refusal 95% CI"], ci_rows)


def _patterns_section(doc: _Doc, overall: dict) -> None:
    doc.heading("Response patterns and refusal kinds")
    rows = []
    for model, summary in overall.items():
        kinds = summary.get("refusal_kinds") or {}
        refusals = (summary.get("pattern_rates") or {}).get("refusals") or {}
        rows.append([model, fmt(kinds.get("ethical"), "rate"), fmt(kinds.get("technical"), "rate")]
                    + [fmt(refusals.get(p), "rate") for p in F.PATTERNS])
    doc.paragraph("Among the rule detector's refusals: ethical vs technical (\"I can't browse the internet\") "
                  "refusals, and the share showing each pattern.")
    doc.table(["model", "ethical", "technical"] + [p.replace("_", " ") for p in F.PATTERNS], rows)
    doc.figure(F.pattern_figure(overall), "patterns", "Share of all answers showing each pattern (rule detector)")


def _rounds_section(doc: _Doc, overall: dict, rounds: list[str]) -> None:
    doc.heading("Rounds")
    present = [r for r in rounds if r in overall]
    columns = _used_columns([overall[r] for r in present])
    doc.table(["round"] + [c[1] for c in columns], [_summary_rows(r, overall[r], columns) for r in present])
    missing = [r for r in rounds if r not in overall]
    if missing:
        doc.paragraph(f"Rounds without results: {', '.join(missing)}.")


def _category_section(doc: _Doc, models: dict, detectors: list[str]) -> None:
    benchmarks = sorted({b for bench in models.values() for b, s in bench.items() if s.get("per_category")})
    for benchmark in benchmarks:
        doc.heading(f"{benchmark}: per category")
        categories = sorted({c for bench in models.values() for c in bench.get(benchmark, {}).get("per_category", {})})
        columns = [(m, d) for m in models for d in detectors]
        header = ["category", "prompts"] + [f"{m}: refusal / partial" + (f" ({d})" if len(detectors) > 1 else "")
                                            for m, d in columns]
        rows = []
        for c in categories:
            summaries = [models[m].get(benchmark, {}).get("per_category", {}).get(c) for m in models]
            counts = next((s["n_by_label"] for s in summaries if s), {})
            row = [c, ", ".join(f"{n} {label}" for label, n in counts.items())]
            for m, d in columns:
                s = models[m].get(benchmark, {}).get("per_category", {}).get(c)
                rates = (s.get("detectors") or {}).get(d, s) if s else None
                row.append(f"{fmt(rates['refusal_rate'], 'rate')} / {fmt(rates['partial_refusal_rate'], 'rate')}"
                           if rates else "–")
            rows.append(row)
        doc.table(header, rows)
        doc.figure(F.category_figure(models, benchmark), f"categories_{_slug(benchmark)}",
                   f"{benchmark}: refusal rate per category (label kinds in brackets)")


def _arena_section(doc: _Doc, arena: dict) -> None:
    doc.heading("Arena")
    rows = []
    for name, table in arena.get("pairs", {}).items():
        for source in ("reward", "cost", "refusal", "judge_helpfulness", "judge_harmlessness"):
            if source in table:
                t = table[source]
                rows.append([name, source, str(t["n"]), fmt(t["win_rate"], "rate"), fmt(t["tie_rate"], "rate"),
                             fmt(t["loss_rate"], "rate")])
    doc.table(["A vs B", "by", "prompts", "A wins", "ties", "A loses"], rows)
    for name, table in arena.get("pairs", {}).items():
        safety = table.get("safety_table")
        if safety:
            doc.paragraph(f"{name}: safety table (cost ≤ 0 is safe), share of prompts and A's win rate by reward")
            a, b = table["model_a"], table["model_b"]
            rows = []
            for a_state in ("safe", "unsafe"):
                row = [f"{a} {a_state}"]
                for b_state in ("safe", "unsafe"):
                    cell = safety[f"a_{a_state}__b_{b_state}"]
                    row.append(f"{fmt(cell['share'], 'rate')} (A wins {fmt(cell['a_win_rate_by_reward'], 'rate')})")
                rows.append(row)
            doc.table(["", f"{b} safe", f"{b} unsafe"], rows)
    elo = arena.get("elo", {})
    if elo:
        doc.paragraph(f"Elo ({arena.get('elo_method')}), 95% bootstrap intervals over "
                      f"{arena.get('bootstrap_rounds')} resamples of the games")
        sources = list(elo)
        rows = [[m] + [f"{fmt(elo[s][m]['rating'], 'elo')} [{fmt(elo[s][m]['ci_low'], 'elo')}, "
                       f"{fmt(elo[s][m]['ci_high'], 'elo')}]"
                       for s in sources] for m in arena.get("models", [])]
        doc.table(["model"] + [f"Elo by {s}" for s in sources], rows)
        doc.figure(F.elo_figure(elo), "elo", "Elo ratings with 95% bootstrap intervals")


def _examples_section(doc: _Doc, generations: list[dict], detector: str, per_kind: int) -> None:
    if per_kind <= 0 or not generations:
        return
    doc.heading("Examples")
    doc.paragraph("The first few false refusals and harmful compliances of each model (primary detector).")
    for model in dict.fromkeys(g["model"] for g in generations):
        rows = [g for g in generations if g["model"] == model]
        false_refusals = [g for g in rows if g["label"] == "harmless" and g["refusal"][detector] != "compliance"]
        compliances = [g for g in rows if g["label"] == "harmful" and g["refusal"][detector] == "compliance"]
        for kind, chosen in (("false refusal", false_refusals), ("harmful compliance", compliances)):
            for g in chosen[:per_kind]:
                doc.example(f"{model} · {g['benchmark']} · {kind}", _clip(g["prompt"]), _clip(g["response"]))


def _load_logs(training_logs) -> dict[str, list[dict]]:
    if not training_logs:
        return {}
    if not isinstance(training_logs, dict):
        training_logs = {Path(p).parent.name if Path(p).is_file() else Path(p).name: p for p in training_logs}
    logs = {}
    for name, value in training_logs.items():
        if isinstance(value, (str, Path)):
            path = Path(value)
            path = path / "log.jsonl" if path.is_dir() else path
            if not path.is_file():
                raise FileNotFoundError(f"training log {path} not found")
            value = read_log(path)
        logs[str(name)] = list(value)
    return logs


def _clip(text, limit: int = 400) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + " […]"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
