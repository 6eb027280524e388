"""Predicting refusal from text alone (Reuter & Schulze 2023, "I'm Afraid I Can't Do That: Predicting
Prompt Refusal in Black-Box Generative Language Models", arXiv:2306.03423).

Two small classifiers, both a logistic regression on a fixed feature map:

- **Bag of words** (the paper's baseline): TF-IDF features with scikit-learn's defaults,
  ``tf(t, d)`` = count of word t in text d, ``idf(t) = ln((1 + n) / (1 + df(t))) + 1`` (smooth idf,
  n texts, df(t) of them containing t), ``x_d = tf·idf / ‖tf·idf‖₂``. Words are lower-cased runs of
  letters, digits and apostrophes (optionally with word n-grams).
- **Encoder**: the mean over the (non-padding) tokens of a Hugging Face model's last hidden states,
  standardised with the training mean and standard deviation (the paper fine-tunes BERT; a frozen
  encoder + a linear head is the cheap variant that runs on a CPU).

**Logistic regression** (scikit-learn's objective with inverse regularisation ``C``):

    min_{w,b}  ½‖w‖² + C Σ_i v_i log(1 + exp(−s_i (w·x_i + b))),    s_i = ±1,

with v_i = 1, or v_i = n / (2 n_{class of i}) when ``balanced`` (scikit-learn's ``class_weight="balanced"``:
each class weighs the same, so a model that refuses 5% of prompts does not yield an "always answers" rule),

solved in float64 with L-BFGS (strong Wolfe line search); ``p(refuse | x) = σ(w·x + b)``. With the
TF-IDF features, the words with the largest weights ``w_t`` are those whose presence most raises the
predicted refusal: a model's learned trigger words (:func:`top_words`).

Read on a prompt, the classifier predicts whether the model *will* refuse (paper: 75.9% BERT, 73.9%
TF-IDF+LR on ChatGPT); read on a response, whether it *did* (96.5% / 90.6%).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str, ngram_max: int = 1) -> list[str]:
    """Lower-cased word tokens, plus word n-grams up to ``ngram_max`` joined by a space."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    grams = list(words)
    for n in range(2, ngram_max + 1):
        grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return grams


class TfidfVectorizer:
    """TF-IDF with smooth idf and L2-normalised rows (scikit-learn's ``TfidfVectorizer`` defaults)."""

    def __init__(self, ngram_max: int = 1, min_df: int = 1, max_features: int = 0):
        if ngram_max < 1 or min_df < 1 or max_features < 0:
            raise ValueError("ngram_max and min_df must be >= 1, max_features >= 0")
        self.ngram_max, self.min_df, self.max_features = ngram_max, min_df, max_features
        self.vocabulary: dict[str, int] = {}
        self.idf = torch.zeros(0, dtype=torch.float64)

    def fit(self, texts: Sequence[str]) -> "TfidfVectorizer":
        if not texts:
            raise ValueError("cannot fit TF-IDF on no texts")
        document_frequency = Counter(term for text in texts for term in set(tokenize(text, self.ngram_max)))
        terms = [t for t, df in document_frequency.items() if df >= self.min_df]
        if self.max_features:  # the most frequent terms, ties by the term (deterministic)
            terms = sorted(terms, key=lambda t: (-document_frequency[t], t))[: self.max_features]
        terms.sort()
        if not terms:
            raise ValueError(f"no term occurs in at least min_df={self.min_df} texts")
        self.vocabulary = {term: i for i, term in enumerate(terms)}
        n = len(texts)
        df = torch.tensor([document_frequency[t] for t in terms], dtype=torch.float64)
        self.idf = torch.log((1 + n) / (1 + df)) + 1
        return self

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, V) float64: L2-normalised tf·idf rows (a text with no known word is a zero row)."""
        if not self.vocabulary:
            raise ValueError("TfidfVectorizer.transform before fit")
        out = torch.zeros(len(texts), len(self.vocabulary), dtype=torch.float64)
        for row, text in enumerate(texts):
            for term, count in Counter(tokenize(text, self.ngram_max)).items():
                column = self.vocabulary.get(term)
                if column is not None:
                    out[row, column] = count
        out *= self.idf
        norms = out.norm(dim=1, keepdim=True)
        return out / torch.where(norms > 0, norms, torch.ones_like(norms))

    @property
    def terms(self) -> list[str]:
        return sorted(self.vocabulary, key=self.vocabulary.__getitem__)


class LogisticRegression:
    """Binary L2-regularised logistic regression (module docstring), fitted with L-BFGS in float64."""

    def __init__(self, C: float = 1.0, max_iter: int = 200, balanced: bool = False):
        if not (C > 0 and math.isfinite(C)):
            raise ValueError(f"C must be a positive number, got {C}")
        self.C, self.max_iter, self.balanced = C, max_iter, balanced
        self.weight = torch.zeros(0, dtype=torch.float64)
        self.bias = 0.0

    def fit(self, features: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> "LogisticRegression":
        x = features.double()  # size = (N, D)
        y = torch.as_tensor(labels, dtype=torch.float64)  # size = (N,), 1 = refused
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
        if not set(y.tolist()) <= {0.0, 1.0}:
            raise ValueError("labels must be 0 or 1")
        # balanced: example weights n / (2 n_class), scikit-learn's class_weight="balanced"; else 1
        counts = {c: int((y == c).sum()) for c in (0.0, 1.0)}
        example_weights = (torch.tensor([len(y) / (2 * counts[float(t)]) for t in y.tolist()], dtype=torch.float64)
                           if self.balanced else torch.ones_like(y))
        weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.max_iter, tolerance_grad=1e-9,
                                      tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = x @ weight + bias
            loss = 0.5 * weight.square().sum() + self.C * torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y, weight=example_weights, reduction="sum")
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = weight.detach(), float(bias.detach())
        return self

    def decision_function(self, features: torch.Tensor) -> torch.Tensor:
        return features.double() @ self.weight + self.bias

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) p(refused)."""
        return torch.sigmoid(self.decision_function(features))

    def predict(self, features: torch.Tensor) -> list[int]:
        return (self.decision_function(features) > 0).long().tolist()


def accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    if len(predicted) != len(labels) or not labels:
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    return sum(int(p) == int(t) for p, t in zip(predicted, labels)) / len(labels)


def balanced_accuracy(predicted: Sequence[int], labels: Sequence[int]) -> float:
    """Mean of the recall on refused (1) and on answered (0) examples; the recall of the one class present when
    the other is absent. 0.5 for a constant prediction: the fair figure when one class dominates."""
    recalls = [accuracy([p for p, t in zip(predicted, labels) if t == c], [c] * labels.count(c))
               for c in (0, 1) if c in labels]
    return sum(recalls) / len(recalls)


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC: P(score of a refused example > score of an answered one), ties counting ½; None with one class."""
    positive = [s for s, t in zip(scores, labels) if t == 1]
    negative = [s for s, t in zip(scores, labels) if t == 0]
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def top_words(vectorizer: TfidfVectorizer, classifier: LogisticRegression, k: int = 20) -> dict[str, list]:
    """The ``k`` terms with the largest weights (push towards refusal) and the ``k`` most negative
    (towards compliance), each as ``[term, weight]``; ties broken by the term."""
    pairs = list(zip(vectorizer.terms, classifier.weight.tolist()))
    refusal = sorted(pairs, key=lambda p: (-p[1], p[0]))[:k]
    compliance = sorted(pairs, key=lambda p: (p[1], p[0]))[:k]
    return {"refusal": [[t, round(w, 4)] for t, w in refusal if w > 0],
            "compliance": [[t, round(w, 4)] for t, w in compliance if w < 0]}


# --------------------------------------------------------------------------------------------
# Encoder features


class Standardizer:
    """``(x − μ) / σ`` with the training mean and standard deviation (σ = 1 where a feature is constant)."""

    def fit(self, x: torch.Tensor) -> "Standardizer":
        self.mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def mean_pooled_features(model, tokenizer, texts: Sequence[str], max_length: int = 128, batch_size: int = 32,
                         layer: int = -1) -> torch.Tensor:
    """(N, d) float64: the mean of hidden state ``layer`` over each text's non-padding tokens.

    ``model`` is an ``AutoModel`` (encoder or decoder trunk); texts are read as they are (no chat template)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt").to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[layer].double()  # size = (B, T, d)
        mask = batch["attention_mask"].unsqueeze(-1).double()  # size = (B, T, 1)
        rows.append((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))
    model.train(was_training)
    pooled = torch.cat(rows).cpu() if rows else torch.zeros(0, 0, dtype=torch.float64)
    out = torch.empty_like(pooled)
    out[order] = pooled
    return out


def fit_selected(train_x: torch.Tensor, train_y: list[int], validation_x: torch.Tensor, validation_y: list[int],
                 grid: Sequence[float], max_iter: int = 200, metric: str = "auc",
                 balanced: bool = False) -> tuple[LogisticRegression, float, float | None]:
    """Fit one regression per ``C`` in ``grid`` and keep the best on validation by ``metric`` (``accuracy``,
    ``balanced_accuracy`` or ``auc``; the first best on ties).

    Returns ``(classifier, C, validation score)``; with no validation rows (or an undefined AUC: one class)
    the first ``C`` is kept and the score is None."""
    if not grid:
        raise ValueError("the grid of C values is empty")
    best = None
    for C in grid:
        classifier = LogisticRegression(C, max_iter, balanced).fit(train_x, train_y)
        score = validation_score(classifier, validation_x, validation_y, metric) if validation_y else None
        if best is None or (score is not None and (best[2] is None or score > best[2])):
            best = (classifier, C, score)
        if score is None:
            break
    return best


def validation_score(classifier: LogisticRegression, x: torch.Tensor, labels: list[int], metric: str) -> float | None:
    if metric == "auc":
        return auc(classifier.decision_function(x).tolist(), labels)
    if metric == "balanced_accuracy":
        return balanced_accuracy(classifier.predict(x), labels)
    if metric == "accuracy":
        return accuracy(classifier.predict(x), labels)
    raise ValueError(f"unknown selection metric {metric!r} (accuracy, balanced_accuracy, auc)")
