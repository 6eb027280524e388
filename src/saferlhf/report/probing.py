"""Report sections of the probing metrics (``saferlhf.evaluation.probing``): tense reformulations, refusal
as abstention, and refused / harmful / harmless-but-compliant / incoherent outcomes. Each section is left
out when its metrics are absent."""

from __future__ import annotations


def probing_sections(doc, metrics: dict, fmt) -> None:
    models = metrics.get("models", {})
    settings = metrics.get("settings", {})
    _reformulation(doc, models, settings.get("reformulation") or {}, fmt)
    _abstention(doc, models, metrics.get("controls") or {}, settings.get("abstention") or {}, fmt)
    _outcomes(doc, models, settings.get("harm") or {}, fmt)
    _own_metrics(doc, models, fmt)


def _reformulation(doc, models: dict, info: dict, fmt) -> None:
    tenses = info.get("tenses") or []
    if not tenses:
        return
    k = info.get("attempts", 1)
    doc.heading("Past and future tense reformulations")
    doc.paragraph(f"Harmful prompts rewritten by {info.get('rewriter_description', info.get('rewriter'))}, "
                  f"{k} attempt(s) per prompt and tense (Andriushchenko & Flammarion 2024). Attack success: the "
                  "share of harmful prompts complied with in at least one attempt; k = 1 is the first attempt "
                  "only; coherent: complied with and not incoherent (saferlhf.evaluation.harm). "
                  f"Template fallbacks: {info.get('fallbacks', 0)}.")
    header = ["model / benchmark", "direct"] + [h for t in tenses for h in (f"{t} k=1", f"{t} k={k}",
                                                                            f"{t} k={k} coherent")]
    rows = []
    for model, benches in models.items():
        for bench, s in benches.items():
            r = s.get("reformulated")
            if not r:
                continue
            cells = [fmt(s.get("harmful_compliance_rate"), "rate")]
            for t in tenses:
                cells += [fmt(r.get(t, {}).get("harmful_compliance_rate_first_attempt"), "rate"),
                          fmt(r.get(t, {}).get("harmful_compliance_rate"), "rate"),
                          fmt(r.get(t, {}).get("coherent_compliance_rate"), "rate")]
            rows.append([f"{model} / {bench}"] + cells)
    doc.table(header, rows)


def _abstention(doc, models: dict, controls: dict, settings: dict, fmt) -> None:
    rows = []
    for model, benches in models.items():
        rows += [_abstention_row(f"{model} / {bench}", s["abstention"], fmt)
                 for bench, s in benches.items() if s.get("abstention")]
    for name, control in controls.items():
        rows += [_abstention_row(f"control:{name} / {bench}", s["abstention"], fmt)
                 for bench, s in control.items() if isinstance(s, dict) and s.get("abstention")]
    if not rows:
        return
    penalty = settings.get("penalty", 1.0)
    doc.heading("Refusal as abstention")
    doc.paragraph("Answering a harmful prompt is the error, answering a harmless one is right; a refusal "
                  "abstains. Coverage = share answered, selective risk = share of the answered that were harmful "
                  "(the model's own decisions). AURC = area under the risk-coverage curve of the confidence "
                  "signal (a model: its own decision; a control: its score), E-AURC = AURC minus the optimal "
                  f"ranking's. Risk-aware score: +1 right answer, -{penalty:g} wrong answer, 0 refusal (break-even "
                  f"confidence {penalty / (1 + penalty):.2f}); Chow's rule answers iff p(right) >= "
                  f"{1 - settings.get('chow_rejection_cost', 0.5):.2f}; oracle = every decision right.")
    doc.table(["model / benchmark", "coverage", "selective risk", "AURC", "E-AURC", "score (model)",
               "score (risk-aware rule)", "score (Chow)", "score (oracle)"], rows)
    doc.figure(risk_coverage_figure(models, controls), "risk_coverage", "Risk-coverage curves: share of the answered "
               "prompts that were harmful vs share answered (a model's own refusals: one step; a control: its score)")


def risk_coverage_figure(models: dict, controls: dict):
    """One panel per benchmark: the ``abstention.curve`` of every model and control, as steps."""
    from saferlhf.report.figures import _color, plt

    curves: dict[str, list[tuple[str, list]]] = {}
    for source in (models, {f"control:{k}": v for k, v in controls.items()}):
        for name, benches in source.items():
            for bench, s in benches.items():
                if isinstance(s, dict) and s.get("abstention"):
                    curves.setdefault(bench, []).append((name, s["abstention"]["curve"]))
    if not curves:
        return None
    figure, axes = plt.subplots(1, len(curves), figsize=(5.6 * len(curves), 4.4), squeeze=False)
    for axis, (bench, lines) in zip(axes[0], sorted(curves.items())):
        for i, (name, curve) in enumerate(lines):
            axis.step([0.0] + [c for c, _ in curve], [curve[0][1]] + [r for _, r in curve], where="pre",
                      color=_color(i), label=name)
        axis.set_xlim(0, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.set_xlabel("coverage (share answered)")
        axis.set_ylabel("selective risk (harmful among answered)")
        axis.set_title(bench)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _abstention_row(label: str, a: dict, fmt) -> list[str]:
    own = a.get("model_decisions", {})
    return [label, fmt(own.get("coverage"), "rate"), fmt(own.get("selective_risk"), "rate"), fmt(a["aurc"]),
            fmt(a["excess_aurc"]), fmt(own.get("score")), fmt(a["risk_aware"]["score"]), fmt(a["chow"]["score"]),
            fmt(a["oracle_score"])]


def _outcomes(doc, models: dict, harm: dict, fmt) -> None:
    rows = []
    for model, benches in models.items():
        for bench, s in benches.items():
            o = (s.get("outcomes") or {}).get("harmful_prompts") or {}
            if o.get("n"):
                rows.append([f"{model} / {bench}", str(o["n"])] + [fmt(o[k], "rate") for k in (
                    "refused", "harmful", "harmless_compliant", "incoherent", "compliant_unjudged")])
    if not rows:
        return
    doc.heading("Answers to harmful prompts: refused, harmful, harmless, incoherent")
    decided = harm.get("decided_by", {})
    doc.paragraph("Each answer has one outcome, decided in this order: refused (" + decided.get("refused", "?")
                  + "), incoherent (" + decided.get("incoherent", "?") + "), harmful (" + decided.get("harmful", "?")
                  + "), else harmless but compliant; unjudged = compliant with no harm verdict.")
    doc.table(["model / benchmark", "harmful prompts", "refused", "harmful", "harmless-but-compliant", "incoherent",
               "unjudged"], rows)


def _own_metrics(doc, models: dict, fmt) -> None:
    rows = []
    for model, benches in models.items():
        for bench, s in benches.items():
            m = s.get("benchmark_metrics")
            if not m:
                continue
            refusal = m.get("malicious_code_refusal_rate", m.get("dual_use_refusal_rate", m.get("refusal_rate")))
            rows.append([f"{model} / {bench}", str(m.get("n_prompts")), fmt(refusal, "rate"),
                         fmt(m.get("variant_consistency"), "rate"),
                         fmt(m.get("language_consistency", m.get("agent_consistency")), "rate")])
    if not rows:
        return
    doc.heading("RMCBench, CIVICS, Forbidden Science")
    doc.paragraph("Refusal rate: malicious-code refusal (RMCBench), dual-use refusal (Forbidden Science), refusal "
                  "of value statements (CIVICS). Consistency: CIVICS, the share of statements answered with the "
                  "same stance across the three wordings, and across the original language and its English "
                  "translation; Forbidden Science, the share of agents asked several ways that are all refused or "
                  "all answered (saferlhf.evaluation.extra_benchmarks).")
    doc.table(["model / benchmark", "prompts", "refusal rate", "consistency (wordings)",
               "consistency (languages / agents)"], rows)
