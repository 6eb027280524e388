"""``write_report`` on hand-made generations: files, embedded images, and a headless-Chromium render."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from saferlhf.evaluation.arena import run_arena
from saferlhf.evaluation.metrics import summarize
from saferlhf.report import write_report
from saferlhf.report import figures
from saferlhf.report.figures import training_figure

CHROMIUM = Path("/usr/bin/chromium")
PATTERN_NAMES = ("direct_refusal", "apology", "explanation", "deflection", "acknowledgment", "boundary_setting",
                 "emotional_awareness")


def _generations():
    rows = []
    for m, model in enumerate(("beaver-v1", "beaver-v2", "beaver-v3")):
        for i in range(12):
            label = "harmful" if i % 2 else "harmless"
            refused = (i + m) % 3 == 0 if label == "harmless" else (i + m) % 4 != 1
            rows.append({
                "model": model, "benchmark": "xstest", "index": i, "label": label, "category": f"type{i % 3}",
                "prompt": f"prompt <{i}> & more", "response": ("I can't help with that." if refused else "Sure: step 1"),
                "refusal": {"rules": "full_refusal" if refused else "compliance"},
                "patterns": {p: (refused and p == "direct_refusal") for p in PATTERN_NAMES},
                "refusal_kind": "ethical" if refused else None,
                "reward": 0.3 * i - m, "cost": (1.0 if (label == "harmful" and not refused) else -1.0) + 0.1 * m,
            })
    return rows


def _metrics(generations):
    by_model = {}
    for g in generations:
        by_model.setdefault(g["model"], []).append(g)
    return {
        "models": {m: {"xstest": summarize(rows, ["rules"], "rules")} for m, rows in by_model.items()},
        "overall": {m: summarize(rows, ["rules"], "rules", per_category=False) for m, rows in by_model.items()},
        "arena": run_arena(by_model, "rules", bootstrap_rounds=30),
        "settings": {"detectors": ["rules"], "primary_detector": "rules"},
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    generations = _generations()
    logs = {"ppo-lag": [{"step": s, "reward/mean": 0.1 * s, "cost/mean": 0.5 - 0.1 * s, "lagrange_multiplier": 1.0 / (1 + s)}
                        for s in range(10)]}
    paths = write_report(out, _metrics(generations), generations, training_logs=logs,
                         rounds=["beaver-v1", "beaver-v2", "beaver-v3"])
    return out, paths


def test_files_and_embedded_images(report):
    out, paths = report
    names = {p.name for p in paths["figures"]}
    assert names == {"tradeoff.png", "categories_xstest.png", "patterns.png", "reward_cost.png",
                     "cost_histograms.png", "elo.png", "training.png"}
    html = paths["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(names)
    for encoded in images:
        assert base64.b64decode(encoded)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(?:src|href)="(?!data:)', html)  # self-contained: nothing loaded from elsewhere
    assert "prompt &lt;1&gt; &amp; more" in html  # prompts are escaped
    for heading in ("Summary", "Rounds", "Harm vs over-refusal", "Arena", "Training curves", "Examples"):
        assert f">{heading}<" in html
    markdown = paths["markdown"].read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (out / link).is_file()
    assert "| beaver-v1 / xstest |" in markdown


def test_training_figure_picks_reward_cost_and_lambda():
    figure = training_figure({"run": [{"step": 0, "reward": 1.0, "episode_costs": 0.5, "lambda": 2.0, "loss": 3.0}]})
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["reward", "cost", "Lagrange multiplier λ"]
    assert training_figure({"run": [{"step": 0, "loss": 1.0}]}) is None


def test_training_logs_from_files(tmp_path):
    log = tmp_path / "run1" / "log.jsonl"
    log.parent.mkdir()
    log.write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n" + json.dumps({"step": 2, "reward": 0.7}) + "\n")
    generations = _generations()[:12]
    metrics = {"models": {"beaver-v1": {"xstest": summarize(generations, ["rules"], "rules")}},
               "overall": {"beaver-v1": summarize(generations, ["rules"], "rules", per_category=False)},
               "settings": {"detectors": ["rules"], "primary_detector": "rules"}}
    paths = write_report(tmp_path / "out", metrics, generations, training_logs=[str(log.parent)])
    assert "training.png" in {p.name for p in paths["figures"]}
    with pytest.raises(FileNotFoundError, match="training log"):
        write_report(tmp_path / "out2", metrics, generations, training_logs=[str(tmp_path / "missing.jsonl")])


MARKER_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var marker = document.createElement('div');
  marker.id = 'render-check';
  marker.textContent = 'IMAGES ' + ok + '/' + images.length;
  document.body.appendChild(marker);
});
</script></body>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed; "
                                                  "`apt-get install -y chromium` (the Makefile does it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    out, paths = report
    page = tmp_path / "check.html"  # a copy with a checking script; the report itself has no scripts
    page.write_text(paths["html"].read_text().replace("</body>", MARKER_SCRIPT))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    found = re.search(r'id="render-check">IMAGES (\d+)/(\d+)<', dom.stdout)
    assert found, f"no render marker in the DOM (chromium exit {dom.returncode}): {dom.stderr[-800:]}"
    assert int(found.group(1)) == int(found.group(2)) == len(paths["figures"])
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), *flags, "--window-size=1200,2400", f"--screenshot={shot}", paths["html"].as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a rendered page with plots, not a blank one
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_two_detectors_get_their_own_columns_and_intervals(tmp_path):
    generations = _generations()[:12]
    for g in generations:  # a second detector that never sees a refusal
        g["refusal"]["classifier"] = "compliance"
    metrics = {"models": {"beaver-v1": {"xstest": summarize(generations, ["rules", "classifier"], "rules")}},
               "overall": {"beaver-v1": summarize(generations, ["rules", "classifier"], "rules", per_category=False)},
               "settings": {"detectors": ["rules", "classifier"], "primary_detector": "rules"}}
    paths = write_report(tmp_path, metrics, generations)
    markdown = paths["markdown"].read_text()
    assert "| beaver-v1 / xstest (classifier) | [" in markdown  # intervals per detector
    assert "beaver-v1: refusal / partial (rules) | beaver-v1: refusal / partial (classifier) |" in markdown
    type0 = next(line for line in markdown.splitlines() if line.startswith("| type0 |"))
    assert type0.endswith("| 0.0% / 0.0% |")  # the classifier column: no refusals
    assert "| beaver-v1 | 100.0% | 0.0% |" in markdown  # rule refusals: all ethical, none technical


def test_controls_figure_draws_the_reference_line_from_its_intercept_and_slope():
    controls = {"gate": {"xstest": {"curve": [{"threshold": 0.0, "harmful_compliance": 0.2, "false_refusal": 0.5},
                                              {"threshold": 1.0, "harmful_compliance": 0.9, "false_refusal": 0.02}],
                                    "harmful_compliance_rate": 0.46, "false_refusal_rate": 0.128}}}
    figure = figures.controls_figure(controls, {}, {"xstest": [58.2, -0.64]})
    line = next(l for l in figure.axes[0].lines if l.get_label().startswith("reference line"))
    frr, hc = line.get_xdata(), line.get_ydata()
    # at 50% harmful compliance the line is at 58.2 - 0.64 * 50 = 26.2% false refusal
    assert frr[list(hc).index(0.5)] == pytest.approx(0.262)
    assert figures.controls_figure(controls, {}) is not None  # no line: still a figure
