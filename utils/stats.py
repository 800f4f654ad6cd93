"""Small, dependency-free statistics for honest numbers: intervals, a paired test, a bootstrap."""

import math

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; well-behaved near 0, 1 and for small n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, free of rounding
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def mcnemar_exact(a_correct, b_correct) -> dict:
    """Paired comparison of two graders' verdicts on the same questions (exact binomial McNemar test)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError("McNemar's test needs the two runs' verdicts on the same questions.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    k = min(only_a, only_b)
    p = 1.0 if discordant == 0 else min(1.0, 2 * sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant)
    return {"n": int(a.size), "only_a_correct": only_a, "only_b_correct": only_b, "p_value": p}


def bootstrap_mean_difference(x, y, paired: bool = True, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Mean of x minus mean of y with a 95% percentile bootstrap interval."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    if paired:
        if x.shape != y.shape:
            raise ValueError("A paired bootstrap needs values for the same questions in both runs.")
        diffs = x - y
        idx = rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))
        samples = diffs[idx].mean(axis=1)
    else:
        samples = x[rng.integers(0, len(x), (n_resamples, len(x)))].mean(1) - y[rng.integers(0, len(y), (n_resamples, len(y)))].mean(1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"difference": float(x.mean() - y.mean()), "ci95": (float(low), float(high)), "n_resamples": n_resamples}


def pearson_with_ci(x, y) -> dict:
    """Pearson correlation with a 95% interval (Fisher z). Steps of a run are autocorrelated, so read the
    interval as optimistic for step-level data."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[keep], y[keep], int(keep.sum())
    if n < 4 or x.std() == 0 or y.std() == 0:
        return {"r": float("nan"), "ci95": (float("nan"), float("nan")), "n": n}
    r = float(np.corrcoef(x, y)[0, 1])
    z, se = math.atanh(max(min(r, 0.999999), -0.999999)), 1 / math.sqrt(n - 3)
    return {"r": r, "ci95": (math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)), "n": n}
