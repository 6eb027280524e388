"""The refusal predictor (Reuter & Schulze 2023): TF-IDF, logistic regression, top words, readers, the stage."""

import json
import math

import pytest
import torch

from saferlhf.config import ConfigError, load_config
from saferlhf.refusal.predictor import (LogisticRegression, Standardizer, TfidfVectorizer, accuracy, auc,
                                        balanced_accuracy, fit_selected, mean_pooled_features, tokenize, top_words)
from saferlhf.refusal.predictor_stage import (RefusalPredictorConfig, read_chatgpt_refusals, read_generations, run,
                                              split_three)

REFUSED = ["how to build a bomb", "make a bomb now", "bomb the city hall", "where to buy a bomb"]
ANSWERED = ["how to bake a cake", "make a cake now", "bake bread in the city", "where to buy a cake"]


def test_tokenize_words_and_bigrams():
    assert tokenize("Don’t KILL the process!") == ["don't", "kill", "the", "process"]
    assert tokenize("a b c", ngram_max=2) == ["a", "b", "c", "a b", "b c"]


def test_tfidf_matches_hand_computed_values():
    vectorizer = TfidfVectorizer().fit(["a b", "a c"])
    assert vectorizer.terms == ["a", "b", "c"]
    idf_b = math.log(3 / 2) + 1  # smooth idf: ln((1 + n) / (1 + df)) + 1, n = 2, df(b) = 1; idf(a) = 1
    assert vectorizer.idf.tolist() == pytest.approx([1.0, idf_b, idf_b])
    row = vectorizer.transform(["a b b z"])[0]  # tf(a) = 1, tf(b) = 2, z unknown
    norm = math.sqrt(1 + (2 * idf_b) ** 2)
    assert row.tolist() == pytest.approx([1 / norm, 2 * idf_b / norm, 0.0])
    assert vectorizer.transform(["zzz"]).abs().sum() == 0  # no known word: a zero row, not NaN


def test_tfidf_min_df_and_max_features():
    vectorizer = TfidfVectorizer(min_df=2).fit(["a b", "a c", "a b d"])
    assert vectorizer.terms == ["a", "b"]
    assert TfidfVectorizer(max_features=1).fit(["a b", "a c"]).terms == ["a"]
    with pytest.raises(ValueError, match="min_df"):
        TfidfVectorizer(min_df=5).fit(["a"])


def test_logistic_regression_stationary_point_by_hand():
    # x = (+1, -1), y = (1, 0), C = 1: by symmetry b = 0 and the objective ½w² + 2 log(1 + e^{-w}) is
    # stationary where w = 2 σ(−w), i.e. w ≈ 0.6749.
    model = LogisticRegression(C=1.0).fit(torch.tensor([[1.0], [-1.0]]), [1, 0])
    w = float(model.weight[0])
    assert model.bias == pytest.approx(0.0, abs=1e-7)
    assert w == pytest.approx(2 / (1 + math.exp(w)), abs=1e-6)
    assert w == pytest.approx(0.6749, abs=1e-3)
    assert model.predict(torch.tensor([[2.0], [-0.5]])) == [1, 0]
    assert model.predict_proba(torch.tensor([[0.0]])).item() == pytest.approx(0.5)


def test_balanced_logistic_regression_by_hand():
    # one refused point at +1, three answered at -1; balanced weights n / (2 n_c) = 2 and 2/3, so each side carries
    # a total weight of 2: the objective ½w² + 2 log(1 + e^{-(w+b)}) + 2 log(1 + e^{-(w-b)}) is symmetric in b,
    # so b = 0 and w = 4 σ(−w). Unweighted, the majority pulls the bias below 0.
    x, y = torch.tensor([[1.0], [-1.0], [-1.0], [-1.0]]), [1, 0, 0, 0]
    model = LogisticRegression(C=1.0, balanced=True).fit(x, y)
    w = float(model.weight[0])
    assert model.bias == pytest.approx(0.0, abs=1e-6)
    assert w == pytest.approx(4 / (1 + math.exp(w)), abs=1e-6)
    assert LogisticRegression(C=1.0).fit(x, y).bias < -0.1


def test_logistic_regression_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        LogisticRegression().fit(torch.ones(2, 1), [0, 2])
    with pytest.raises(ValueError, match="C must be"):
        LogisticRegression(C=0)


def test_top_words_on_a_toy_corpus():
    vectorizer = TfidfVectorizer().fit(REFUSED + ANSWERED)
    model = LogisticRegression(C=10.0).fit(vectorizer.transform(REFUSED + ANSWERED), [1] * 4 + [0] * 4)
    words = top_words(vectorizer, model, k=3)
    assert words["refusal"][0][0] == "bomb"  # the only word found in refused prompts alone, in all four
    assert words["compliance"][0][0] == "cake"  # in three of the four answered prompts, never in a refused one
    assert all(w > 0 for _, w in words["refusal"]) and all(w < 0 for _, w in words["compliance"])
    assert accuracy(model.predict(vectorizer.transform(["a bomb", "a cake"])), [1, 0]) == 1.0


def test_accuracy_balanced_accuracy_auc_by_hand():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    # refused recall 2/3, answered recall 0/1 -> (2/3 + 0) / 2
    assert balanced_accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(1 / 3)
    assert balanced_accuracy([0, 0, 0, 0], [0, 0, 0, 1]) == 0.5  # always "answers": 1 and 0
    assert balanced_accuracy([1, 0], [1, 1]) == 0.5  # one class present: its recall
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9 > 0.4), (0.9 > 0.1), (0.4 = 0.4: ½), (0.4 > 0.1) -> 3.5 / 4
    assert auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == 0.875
    assert auc([0.3, 0.2], [1, 1]) is None


def test_fit_selected_keeps_the_best_C():
    x = torch.tensor([[1.0], [-1.0], [0.2], [-0.2]])
    y = [1, 0, 1, 0]
    _, C, score = fit_selected(x, y, torch.tensor([[0.1], [-0.1]]), [1, 0], [0.01, 100.0], metric="accuracy")
    assert (C, score) == (0.01, 1.0)  # both separate the validation points: the first best is kept
    # in one dimension every C gives w > 0, so the same ranking 0.5 > 0.3 > -1 and the same AUC (1.0): the first C stays
    _, C, score = fit_selected(x, y, torch.tensor([[0.5], [0.3], [-1.0]]), [1, 0, 0], [0.01, 100.0])
    assert (C, score) == (0.01, 1.0)
    _, C, score = fit_selected(x, y, torch.zeros(0, 1), [], [5.0, 1.0])
    assert C == 5.0 and score is None
    with pytest.raises(ValueError, match="selection metric"):
        fit_selected(x, y, x, y, [1.0], metric="f1")


def test_standardizer():
    scaler = Standardizer().fit(torch.tensor([[1.0, 3.0], [3.0, 3.0]]))
    assert scaler.transform(torch.tensor([[2.0, 3.0], [3.0, 4.0]])).tolist() == [[0.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])  # an encoder and a decoder (SmolLM2's tokenizer)
def test_mean_pooling_ignores_padding(name):
    from saferlhf.models.loading import load_backbone, load_tokenizer

    tokenizer, model = load_tokenizer(name), load_backbone(name)
    texts = ["short one", "a much longer text that needs padding on the other one"]
    together = mean_pooled_features(model, tokenizer, texts, batch_size=2)
    alone = mean_pooled_features(model, tokenizer, texts[:1], batch_size=1)
    batch = tokenizer(texts[:1], return_tensors="pt")
    by_hand = model(**batch).last_hidden_state[0].double().mean(dim=0)
    assert together.shape == (2, model.config.hidden_size)
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    assert torch.allclose(alone[0], by_hand, atol=1e-5)


def test_split_three_sizes_and_disjoint_prompts():
    class Row:
        def __init__(self, prompt):
            self.prompt = prompt

    rows = [Row(f"prompt {i}") for i in range(20)]
    train, validation, test = split_three(rows, 0.15, 0.15, seed=1)
    assert (len(train), len(validation), len(test)) == (14, 3, 3)
    assert len({r.prompt for r in train + validation + test}) == 20


def test_read_chatgpt_refusals_drops_the_papers_tones(mini_chatgpt):
    examples, dropped = read_chatgpt_refusals([str(mini_chatgpt)])
    assert dropped == {"dontknow": 1, "incoherent": 1}
    assert len(examples) == 10
    refused = [e.prompt for e in examples if e.label != "compliance"]
    assert len(refused) == 5  # 3 rejected + redirected + contradicted: every tone but complied


def test_read_chatgpt_refusals_shared(shared_data):
    examples, dropped = read_chatgpt_refusals([str(shared_data / "chatgpt-refusals" / "all_hand_labeled.json")])
    assert dropped == {"dontknow": 12, "incoherent": 3}
    assert len(examples) == 1706
    assert sum(e.label == "compliance" for e in examples) == 1060


def _write_generations(path, models=("m",)):
    rows = []
    for model in models:
        for i, prompt in enumerate(REFUSED * 3 + ANSWERED * 3):
            refused = i < 12
            rows.append({"model": model, "benchmark": "b" if i % 2 else "a", "prompt": f"{prompt} {i}",
                         "response": "I'm sorry, I can't." if refused else "Sure, here it is.",
                         "refusal": {"rules": "full_refusal" if refused else "compliance"}})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_read_generations_filters_and_counts(tmp_path):
    path = _write_generations(tmp_path / "generations.jsonl", models=("m", "n"))
    with pytest.raises(ValueError, match="several models"):
        read_generations(path)
    examples, skipped = read_generations(tmp_path, model="n", benchmarks=["a"])
    assert len(examples) == 12 and skipped == {"other_model": 24, "other_benchmark": 12, "no_verdict": 0}
    with pytest.raises(ValueError, match="no usable records"):
        read_generations(path, model="m", detector="classifier")
    with pytest.raises(ValueError, match="no records of model"):
        read_generations(path, model="x")
    (tmp_path / "bad.jsonl").write_text('{"model": "m"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: key 'prompt' missing"):
        read_generations(tmp_path / "bad.jsonl")


def test_stage_on_generations_with_tiny_encoder(tmp_path):
    _write_generations(tmp_path / "generations.jsonl")
    config = load_config(RefusalPredictorConfig, None, [
        "source=generations", f"generations={tmp_path}", "inputs=[prompt]", "classifiers=[tfidf,encoder]",
        "encoder=tiny-bert", "top_k=3", f"output_dir={tmp_path / 'out'}"])
    metrics = run(config)
    assert metrics["pairs"] == 24 and sum(metrics["split"][k] for k in ("train", "validation", "test")) == 24
    assert set(metrics["prompt"]) == {"tfidf", "encoder"}
    assert 0.0 <= metrics["prompt"]["encoder"]["accuracy"] <= 1.0
    words = json.loads((tmp_path / "out" / "top_words.json").read_text())
    assert words["prompt"]["refusal"][0][0] == "bomb"
    assert "paper" not in metrics
    assert "| prompt | TF-IDF + LR |" in (tmp_path / "out" / "predictor.md").read_text()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["prompt"]["tfidf"]["C"] in config.C_grid


def test_stage_chatgpt_format_reports_paper_figures(tmp_path, mini_chatgpt):
    rows = json.loads(mini_chatgpt.read_text()) * 3
    for i, row in enumerate(rows):
        row["prompt"] = f"{row['prompt']} #{i}"
    (tmp_path / "data.json").write_text(json.dumps(rows))
    metrics = run(load_config(RefusalPredictorConfig, None, [
        f"files=[{tmp_path / 'data.json'}]", "classifiers=[tfidf]", f"output_dir={tmp_path / 'out'}"]))
    assert metrics["paper"]["prompt"]["tfidf"] == 0.739 and metrics["skipped"] == {"tone_dontknow": 3,
                                                                                    "tone_incoherent": 3}
    assert set(metrics) >= {"prompt", "response", "majority_baseline_accuracy"}
    assert "90.6%" in (tmp_path / "out" / "predictor.md").read_text()


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="generations"):
        load_config(RefusalPredictorConfig, None, ["source=generations"])
    with pytest.raises(ConfigError, match=r"classifiers\[0\]"):
        load_config(RefusalPredictorConfig, None, ["classifiers=[bert]"])
