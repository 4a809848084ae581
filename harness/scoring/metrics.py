"""Pure metric functions on numpy arrays: no I/O, no printing, no database, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# scipy.special (binomial CDF and its complement, normal quantile; scipy.stats is slower still) costs about 0.3 s to
# import, more than the rest of a re-run with nothing changed: the board's fair-coin tests use ``fair_coin_cdf``
# below, and scipy.special is imported only by the functions that need it.
FAIR_COIN_EXACT_UP_TO = 2000  # pairs (3 ms at most); above, ``fair_coin_cdf`` asks scipy (the exact sum grows as n²)


def fair_coin_cdf(k: int, n: int) -> float:
    """P(X <= k), X ~ Bin(n, 1/2), summed exactly in integers and rounded once (scipy's ``bdtr(k, n, 0.5)`` agrees to
    about 1e-11); for n above FAIR_COIN_EXACT_UP_TO, scipy's value."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if n > FAIR_COIN_EXACT_UP_TO:
        from scipy.special import bdtr
        return float(bdtr(k, n, 0.5))
    term = total = 1
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i  # C(n, i)
        total += term
    return total / (1 << n)  # int / int: correctly rounded, also where 2**n has no float

KINDS = ("probabilities", "log_probabilities", "logits")


def _paired_1d(a, b, names: str = "labels and preds") -> tuple[np.ndarray, np.ndarray]:
    """Return two arrays as numpy, raising ValueError unless both are 1-D with equal lengths."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or len(a) != len(b):
        raise ValueError(
            f"Expected {names} to be 1-D arrays of equal length, got shapes {a.shape} and {b.shape}."
        )
    return a, b


def count_correct(labels, preds) -> tuple[int, int]:
    """Return (number of positions where preds equals labels, number of samples)."""
    labels, preds = _paired_1d(labels, preds)
    return int(np.count_nonzero(labels == preds)), len(labels)


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when total is 0."""
    if total == 0:
        return float("nan"), float("nan")
    from scipy.special import ndtri
    z = float(ndtri(0.5 + confidence / 2))
    p, n = correct / total, total
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def confusion_matrix(labels, preds, num_classes: int = 10) -> np.ndarray:
    """Return the int64 [C, C] confusion matrix: rows are true labels, columns are predictions."""
    labels, preds = _paired_1d(labels, preds)
    for name, values in (("labels", labels), ("preds", preds)):
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"Expected integer {name}, got dtype {values.dtype}.")
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"Every value in {name} must lie in [0, {num_classes}).")
    flat = labels.astype(np.int64) * num_classes + preds.astype(np.int64)
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den as float64, NaN where den is 0."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (precision, recall) from a confusion matrix; NaN where the denominator is 0."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).astype(np.float64)
    return _safe_divide(tp, confusion.sum(axis=0)), _safe_divide(tp, confusion.sum(axis=1))


def detect_output_kind(outputs: np.ndarray, atol: float = 1e-3) -> str:
    """Classify a whole [N, C] output array as "probabilities", "log_probabilities" or "logits"."""
    x = np.asarray(outputs, dtype=np.float64)
    if np.all((x >= -atol) & (x <= 1 + atol)) and np.allclose(x.sum(axis=1), 1, rtol=0, atol=atol):
        return "probabilities"
    if np.all(x <= atol) and np.allclose(np.exp(x).sum(axis=1), 1, rtol=0, atol=atol):
        return "log_probabilities"
    return "logits"


def to_probabilities(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Convert outputs of the given kind to float64 probabilities whose rows sum to 1."""
    x = np.asarray(outputs, dtype=np.float64)
    if kind == "probabilities":
        p = np.clip(x, 0.0, None)
    elif kind == "log_probabilities":
        p = np.exp(x)
    elif kind == "logits":
        p = np.exp(x - x.max(axis=1, keepdims=True))
    else:
        raise ValueError(f"Unknown output kind {kind!r}; expected one of {', '.join(KINDS)}.")
    return p / p.sum(axis=1, keepdims=True)


def log_loss(labels, probs, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped to [eps, 1 - eps]."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"Expected N labels and [N, C] probs, got {labels.shape} and {probs.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"Every label must lie in [0, {probs.shape[1]}).")
    p_true = np.clip(probs[np.arange(len(labels)), labels], eps, 1 - eps)
    return float(-np.mean(np.log(p_true)))


def predictions(probs) -> tuple[np.ndarray, np.ndarray]:
    """Return (argmax class as int64, its probability as the confidence) per row."""
    probs = np.asarray(probs)
    return probs.argmax(axis=1).astype(np.int64), probs.max(axis=1)


def mcnemar_exact(correct_a, correct_b) -> float:
    """Two-sided exact McNemar p-value for paired per-sample correctness of two models."""
    a, b = _paired_1d(correct_a, correct_b, "correct_a and correct_b")
    a, b = a.astype(bool), b.astype(bool)
    only_a, only_b = int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))
    if only_a + only_b == 0:
        return 1.0
    # Under H0 the discordant pairs split like a fair coin: p = 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2).
    return float(min(1.0, 2 * fair_coin_cdf(min(only_a, only_b), only_a + only_b)))


def discordant(correct_a, correct_b) -> tuple[int, int]:
    """The discordant pairs of paired per-sample correctness: (right only in a, right only in b)."""
    a, b = _paired_1d(correct_a, correct_b, "correct_a and correct_b")
    a, b = a.astype(bool), b.astype(bool)
    return int(np.count_nonzero(a & ~b)), int(np.count_nonzero(~a & b))


def sign_test_p(better: int, worse: int) -> float:
    """One-sided exact sign test (McNemar's exact test, one-sided) on discordant pairs: the chance of ``better`` or
    more of the ``better + worse`` pairs going one way if each went either way like a fair coin, P(X >= better),
    X ~ Bin(better + worse, 1/2); 1.0 when there are no discordant pairs."""
    if better < 0 or worse < 0:
        raise ValueError(f"Expected counts of discordant pairs, got {better} and {worse}.")
    n = better + worse
    return 1.0 if n == 0 else fair_coin_cdf(worse, n)  # P(X >= better) = P(X <= worse) by symmetry


def above_rate_p(successes: int, total: int, rate: float) -> float:
    """One-sided exact binomial test: P(X >= successes), X ~ Bin(total, rate), the chance of reading this many
    right at ``rate`` (e.g. by guessing); 1.0 when there is nothing to count."""
    if not 0 <= successes <= total or not 0 <= rate <= 1:
        raise ValueError(f"Expected 0 <= successes <= total and a rate in [0, 1], got {successes}, {total}, {rate}.")
    from scipy.special import bdtrc
    return 1.0 if successes == 0 else float(bdtrc(successes - 1, total, rate))


MEMO_ALPHA = 0.001  # the memorisation check flags an entry whose p-value is below this


def memorisation_counts(labels, predicted_original, predicted_copy) -> tuple[int, int, int]:
    """Pairs of an image and its imperceptibly changed copy: (pairs, read right only as given, only as the copy)."""
    labels, original = _paired_1d(labels, predicted_original, "labels and predicted_original")
    _, copy = _paired_1d(labels, predicted_copy, "labels and predicted_copy")
    right_original, right_copy = original == labels, copy == labels
    return (len(labels), int(np.count_nonzero(right_original & ~right_copy)),
            int(np.count_nonzero(~right_original & right_copy)))


def memorisation_p(only_original: int, only_copy: int) -> float:
    """One-sided exact p-value that the images as given are read better than their copies by chance: under H0 the
    discordant pairs split like a fair coin, p = P(X >= only_original), X ~ Bin(only_original + only_copy, 1/2)."""
    n = only_original + only_copy
    if only_original <= only_copy or n == 0:
        return 1.0
    return fair_coin_cdf(only_copy, n)  # P(X >= k) = P(X <= n - k) by symmetry


def memorised(only_original: int, only_copy: int, alpha: float = MEMO_ALPHA) -> bool:
    """Whether an entry reads the exact public images far better than copies a person could not tell apart."""
    return memorisation_p(only_original, only_copy) < alpha


def holm(p_values) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input's order: the i-th smallest of m is multiplied by (m - i),
    made non-decreasing in that order and capped at 1; reject a hypothesis when its adjusted p is below alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"Expected a 1-D array of p-values, got shape {p.shape}.")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def against(correct_by_entry: list[np.ndarray], reference: int) -> np.ndarray:
    """Holm-adjusted exact McNemar p-values of every entry against entry ``reference`` (NaN at ``reference``
    itself); the family is the other entries, so its size grows with the board."""
    if not 0 <= reference < len(correct_by_entry):
        raise ValueError(f"reference {reference} is not one of the {len(correct_by_entry)} entries.")
    others = [i for i in range(len(correct_by_entry)) if i != reference]
    raw = [mcnemar_exact(correct_by_entry[reference], correct_by_entry[i]) for i in others]
    out = np.full(len(correct_by_entry), np.nan)
    out[others] = holm(raw)
    return out


def inseparable(correct_by_entry: list[np.ndarray], reference: int, alpha: float = 0.05) -> np.ndarray:
    """Per entry, whether the per-sample results cannot separate it from entry ``reference`` (itself included):
    exact paired McNemar tests against the reference, Holm–Bonferroni corrected at ``alpha``."""
    adjusted = against(correct_by_entry, reference)
    return np.isnan(adjusted) | (adjusted >= alpha)


@dataclass(frozen=True)
class DatasetMetrics:
    """Everything measured for one entry on one dataset."""

    correct: int
    total: int
    accuracy: float
    ci95: tuple[float, float]
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    log_loss: float | None
    output_kind: str
    predicted: np.ndarray
    confidence: np.ndarray
    probabilities: np.ndarray


def summarize(labels, outputs, num_classes: int = 10) -> DatasetMetrics:
    """Validate a model's [N, C] outputs against N labels and compute all metrics."""
    labels = np.asarray(labels)
    outputs = np.asarray(outputs)
    if labels.ndim != 1:
        raise ValueError(f"Expected labels to be a 1-D array, got shape {labels.shape}.")
    if outputs.ndim != 2 or outputs.shape[1] != num_classes:
        raise ValueError(f"Expected outputs of shape [N, {num_classes}], got {outputs.shape}.")
    if len(outputs) != len(labels):
        raise ValueError(f"Got {len(outputs)} output rows for {len(labels)} labels.")
    if len(labels) == 0:
        raise ValueError("Cannot summarize an empty dataset.")
    if not np.all(np.isfinite(outputs)):
        raise ValueError("Outputs contain NaN or infinite values.")

    kind = detect_output_kind(outputs)
    probs = to_probabilities(outputs, kind)
    predicted, confidence = predictions(probs)
    correct, total = count_correct(labels, predicted)
    confusion = confusion_matrix(labels, predicted, num_classes)
    precision, recall = precision_recall(confusion)
    return DatasetMetrics(
        correct=correct,
        total=total,
        accuracy=correct / total,
        ci95=wilson_interval(correct, total),
        confusion=confusion,
        precision=precision,
        recall=recall,
        log_loss=log_loss(labels, probs),
        output_kind=kind,
        predicted=predicted,
        confidence=confidence.astype(np.float32),
        probabilities=probs.astype(np.float32),
    )
