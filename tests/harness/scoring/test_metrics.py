"""Metrics checked against hand-computed values, scikit-learn and scipy — never against themselves."""

import math

import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from scipy.stats import binomtest
from sklearn import metrics as skm

from harness.scoring import metrics as m

C = 10


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_labels_preds(rng, n=500):
    """Labels never contain 8, predictions never contain 9, so some denominators are 0."""
    labels = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9], size=n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 9, size=n))
    preds[preds == 9] = 0
    return labels, preds


# --- counting and confidence intervals ---------------------------------------------------------


def test_count_correct_by_hand():
    assert m.count_correct([1, 2, 3, 4], [1, 0, 3, 0]) == (2, 4)


@pytest.mark.parametrize("labels, preds", [([1, 2], [1]), ([[1, 2]], [[1, 2]])])
def test_count_correct_rejects_mismatched_shapes(labels, preds):
    with pytest.raises(ValueError, match="1-D arrays of equal length"):
        m.count_correct(labels, preds)


def wilson_by_formula(k, n, z=1.959963984540054):
    """Textbook Wilson score interval, written out."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(81, 100), (0, 10), (10, 10), (9_912, 10_000)])
def test_wilson_interval_matches_closed_form(k, n):
    assert m.wilson_interval(k, n) == pytest.approx(wilson_by_formula(k, n), abs=1e-12)


def test_wilson_interval_known_numbers():
    assert m.wilson_interval(81, 100) == pytest.approx((0.722212, 0.874852), abs=1e-6)
    assert m.wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)


def test_wilson_interval_empty_is_nan():
    assert all(math.isnan(x) for x in m.wilson_interval(0, 0))


# --- confusion matrix, precision, recall --------------------------------------------------------


def test_confusion_matrix_by_hand():
    cm = m.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_confusion_matrix_matches_sklearn(rng):
    labels, preds = random_labels_preds(rng)
    expected = skm.confusion_matrix(labels, preds, labels=range(C))
    np.testing.assert_array_equal(m.confusion_matrix(labels, preds), expected)


@pytest.mark.parametrize("labels, preds", [([0, 10], [0, 1]), ([0, 1], [-1, 1]), ([0.5, 1], [0, 1])])
def test_confusion_matrix_rejects_bad_classes(labels, preds):
    with pytest.raises(ValueError):
        m.confusion_matrix(labels, preds)


def test_precision_recall_matches_sklearn(rng):
    labels, preds = random_labels_preds(rng)
    precision, recall = m.precision_recall(m.confusion_matrix(labels, preds))
    exp_p, exp_r, _, _ = skm.precision_recall_fscore_support(
        labels, preds, labels=range(C), average=None, zero_division=np.nan
    )
    np.testing.assert_allclose(precision, exp_p, equal_nan=True)
    np.testing.assert_allclose(recall, exp_r, equal_nan=True)
    assert np.isnan(precision[9]) and np.isnan(recall[8])  # never predicted / never present


# --- output kinds and probabilities -------------------------------------------------------------


@pytest.fixture
def logits(rng):
    return rng.normal(scale=3.0, size=(64, C))


def test_detect_output_kind(logits):
    assert m.detect_output_kind(softmax(logits, axis=1)) == "probabilities"
    assert m.detect_output_kind(log_softmax(logits, axis=1)) == "log_probabilities"
    assert m.detect_output_kind(logits) == "logits"
    assert m.detect_output_kind(logits - 50) == "logits"  # all negative, but rows don't exp-sum to 1
    assert m.detect_output_kind(softmax(logits, axis=1).astype(np.float32)) == "probabilities"


def test_to_probabilities_round_trips(logits):
    expected = softmax(logits, axis=1)
    for outputs, kind in [
        (expected, "probabilities"),
        (log_softmax(logits, axis=1), "log_probabilities"),
        (logits, "logits"),
        (logits + 1000.0, "logits"),  # would overflow a naive exp
    ]:
        probs = m.to_probabilities(outputs, kind)
        assert probs.dtype == np.float64
        np.testing.assert_allclose(probs, expected, rtol=1e-10, atol=1e-12)


def test_to_probabilities_rejects_unknown_kind(logits):
    with pytest.raises(ValueError, match="Unknown output kind"):
        m.to_probabilities(logits, "scores")


def test_log_loss_matches_sklearn(rng, logits):
    probs = softmax(logits, axis=1)
    labels = rng.integers(0, C, size=len(probs))
    assert m.log_loss(labels, probs) == pytest.approx(skm.log_loss(labels, probs, labels=range(C)))


def test_log_loss_by_hand_with_clipping():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert m.log_loss([0, 1], probs) == pytest.approx((-math.log(0.5) - math.log(1e-15)) / 2)


def test_predictions_by_hand():
    labels, conf = m.predictions(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [1, 0])
    np.testing.assert_allclose(conf, [0.7, 0.6])


# --- McNemar and Holm ----------------------------------------------------------------------------


def paired(only_a, only_b, both=20, neither=5):
    """Correctness vectors with the given discordant counts (a right only, b right only)."""
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_by_hand():
    # b=1, c=6: p = 2 * (C(7,0) + C(7,1)) / 2**7 = 2 * 8 / 128
    assert m.mcnemar_exact(*paired(1, 6)) == pytest.approx(0.125)
    assert m.mcnemar_exact(*paired(6, 1)) == pytest.approx(0.125)
    assert m.mcnemar_exact(*paired(0, 5)) == pytest.approx(2 / 2**5)
    assert m.mcnemar_exact(*paired(3, 3)) == pytest.approx(1.0)


def test_mcnemar_no_discordant_pairs_is_one():
    a = np.array([True, False, True])
    assert m.mcnemar_exact(a, a.copy()) == 1.0


def test_discordant_counts_each_way():
    assert m.discordant(*paired(4, 9)) == (4, 9)
    with pytest.raises(ValueError, match="1-D arrays of equal length"):
        m.discordant([True, False], [True])


def test_sign_test_by_hand():
    # 11 of 12 discordant pairs one way: P(X >= 11) = (C(12,11) + C(12,12)) / 2**12 = 13 / 4096
    assert m.sign_test_p(11, 1) == pytest.approx(13 / 4096, rel=1e-12)
    assert m.sign_test_p(10, 0) == pytest.approx(1 / 1024, rel=1e-12)  # the fewest pairs that reach p < 0.001
    assert m.sign_test_p(9, 0) == pytest.approx(1 / 512, rel=1e-12)
    assert m.sign_test_p(0, 3) == 1.0 and m.sign_test_p(0, 0) == 1.0
    assert m.sign_test_p(2, 2) == pytest.approx(11 / 16)  # P(X >= 2), X ~ Bin(4, 1/2) = (6 + 4 + 1) / 16


def test_fair_coin_cdf_by_hand_and_against_scipy_stats_binomtest():
    """P(X <= k), X ~ Bin(n, 1/2), summed exactly: hand values, both sides of FAIR_COIN_EXACT_UP_TO (where scipy
    takes over) and sizes whose 2**n has no float; scipy.stats' binomtest is the independent reference."""
    assert m.fair_coin_cdf(0, 1) == 0.5 and m.fair_coin_cdf(1, 3) == 0.5 and m.fair_coin_cdf(2, 5) == 0.5
    assert m.fair_coin_cdf(1, 7) == 8 / 128 and m.fair_coin_cdf(-1, 4) == 0.0 and m.fair_coin_cdf(4, 4) == 1.0
    assert m.fair_coin_cdf(0, 1100) == 0.0  # 2**-1100 is below the smallest double: rounded once, to zero
    assert m.fair_coin_cdf(1, 1070) == pytest.approx(1071 * 2.0 ** -1070, rel=1e-12)  # a subnormal
    top = m.FAIR_COIN_EXACT_UP_TO
    for k, n in ((3, 17), (40, 100), (480, 1000), (990, top), (1000, top), (990, top + 1), (4000, 9000)):
        expected = binomtest(n - k, n, 0.5, alternative="greater").pvalue  # P(X >= n - k) = P(X <= k)
        assert m.fair_coin_cdf(k, n) == pytest.approx(expected, rel=1e-9), (k, n)


def test_sign_test_matches_scipy_stats_binomtest():
    for better in range(0, 40, 3):
        for worse in range(0, 40, 4):
            if better + worse:
                expected = binomtest(better, better + worse, 0.5, alternative="greater").pvalue
                assert m.sign_test_p(better, worse) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_above_rate_by_hand_and_against_scipy():
    # 3 of 3 at 1/2: 1/8; 2 or more of 3 at 1/10: 3 * 0.01 * 0.9 + 0.001 = 0.028
    assert m.above_rate_p(3, 3, 0.5) == pytest.approx(1 / 8)
    assert m.above_rate_p(2, 3, 0.1) == pytest.approx(0.028)
    assert m.above_rate_p(0, 5, 0.3) == 1.0
    for k, n, rate in ((220, 2000, 0.1135), (1950, 2000, 0.1135), (7, 40, 0.1), (1, 1, 0.2)):
        assert m.above_rate_p(k, n, rate) == pytest.approx(binomtest(k, n, rate, alternative="greater").pvalue,
                                                           rel=1e-6)
    with pytest.raises(ValueError, match="successes <= total"):
        m.above_rate_p(4, 3, 0.5)


def wrong_on(k, n=100):
    c = np.ones(n, dtype=bool)
    c[:k] = False
    return c


def test_holm_against_a_hand_worked_example():
    # m = 4: sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; made monotone:
    # 0.02, 0.03, 0.06, 0.06.
    adjusted = m.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert m.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert m.holm([]).tolist() == []


def test_five_entries_where_the_second_cannot_be_separated_from_the_leader():
    entries = [wrong_on(0), wrong_on(3), wrong_on(10), wrong_on(20), wrong_on(30)]
    # Raw p against the leader: 2 * 0.5**k for k discordant digits; Holm over 4 comparisons.
    adjusted = m.against(entries, 0)
    assert np.isnan(adjusted[0])
    assert adjusted[1] == pytest.approx(0.25)          # largest raw p, multiplied by 1
    assert adjusted[2] == pytest.approx(2 * 2 * 0.5 ** 10)
    assert adjusted[3] == pytest.approx(3 * 2 * 0.5 ** 20)
    assert adjusted[4] == pytest.approx(4 * 2 * 0.5 ** 30)
    assert m.inseparable(entries, 0).tolist() == [True, True, False, False, False]
    assert m.inseparable(entries, 1).tolist() == [True, True, False, False, False]  # #3 vs #2: 7 digits, p*3 < .05
    with pytest.raises(ValueError, match="reference 5 is not one of the 5 entries"):
        m.against(entries, 5)


def holm_by_hand(p: list[float], alpha: float = 0.05) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects: the k-th smallest against alpha / (m - k)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = [False] * len(p)
    for k, i in enumerate(order):
        if p[i] >= alpha / (len(p) - k):
            break
        rejected[i] = True
    return rejected


def test_two_hundred_entries_leave_only_a_handful_level_with_the_leader():
    rng = np.random.default_rng(7)
    entries = [rng.random(100) < 0.99 - 0.7 * (i / 200) ** 0.5 for i in range(200)]  # a few strong, many weak
    order = sorted(range(200), key=lambda i: -entries[i].sum())
    entries = [entries[i] for i in order]
    raw = []
    for e in entries[1:]:
        n01, n10 = int((entries[0] & ~e).sum()), int((~entries[0] & e).sum())
        raw.append(1.0 if n01 + n10 == 0 else binomtest(n10, n01 + n10, 0.5).pvalue)
    expected = 1 + sum(not r for r in holm_by_hand(raw))
    got = m.inseparable(entries, 0)
    assert int(got.sum()) == expected
    assert 1 < expected < 10  # a handful, not a chain through the whole board


def test_summarize_by_hand():
    labels = np.array([0, 1, 2, 2])
    outputs = np.full((4, C), -5.0)
    outputs[[0, 1, 2, 3], [0, 1, 2, 1]] = 5.0  # predicts 0, 1, 2, 1
    s = m.summarize(labels, outputs)
    assert (s.correct, s.total, s.accuracy, s.output_kind) == (3, 4, 0.75, "logits")
    np.testing.assert_array_equal(s.predicted, [0, 1, 2, 1])
    assert s.confusion[2, 1] == 1 and s.confusion.trace() == 3
    assert s.ci95 == pytest.approx(wilson_by_formula(3, 4))
    assert s.predicted.dtype == np.int64 and s.confidence.dtype == np.float32
    assert s.probabilities.dtype == np.float32 and s.probabilities.shape == (4, C)
    denom = math.exp(5) + 9 * math.exp(-5)
    p_top, p_other = math.exp(5) / denom, math.exp(-5) / denom
    np.testing.assert_allclose(s.confidence, p_top, rtol=1e-6)
    assert s.log_loss == pytest.approx(-(3 * math.log(p_top) + math.log(p_other)) / 4)


@pytest.mark.parametrize(
    "outputs, match",
    [
        (np.zeros((4, 9)), "shape"),
        (np.zeros(4), "shape"),
        (np.zeros((3, C)), "output rows"),
        (np.where(np.eye(4, C) == 1, np.nan, 0.0), "NaN"),
        (np.where(np.eye(4, C) == 1, np.inf, 0.0), "infinite"),
    ],
)
def test_summarize_rejects_bad_outputs(outputs, match):
    with pytest.raises(ValueError, match=match):
        m.summarize(np.array([0, 1, 2, 3]), outputs)


@pytest.mark.parametrize("correct, total", [(0, 1), (1, 1), (37, 50), (81, 100), (9912, 10000), (3, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy_stats(correct, total, confidence):
    from scipy.stats import binomtest
    ci = binomtest(correct, total).proportion_ci(confidence, method="wilson")
    assert m.wilson_interval(correct, total, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_mcnemar_matches_scipy_stats_binomtest():
    from scipy.stats import binomtest
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(1, 200))
        a, b = rng.random(n) < rng.random(), rng.random(n) < rng.random()
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        expected = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert m.mcnemar_exact(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)
