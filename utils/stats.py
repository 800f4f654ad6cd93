"""Small statistics for honest numbers: intervals, paired tests, bootstraps (plain and for autocorrelated series)."""

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
    """Paired comparison of two runs' verdicts on the same questions (exact binomial McNemar test)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError("McNemar's test needs the two runs' verdicts on the same questions.")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    k = min(only_a, only_b)
    p = 1.0 if discordant == 0 else min(1.0, 2 * sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant)
    return {"n": int(a.size), "only_a_correct": only_a, "only_b_correct": only_b, "p_value": p}


def bootstrap_mean(values, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of independent values with a 95% percentile bootstrap interval. For two runs on the same questions, pass
    the per-question differences: the bootstrap then resamples questions, the unit that is independent."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(low), float(high)], "n": len(values)}


def politis_white_block_length(series) -> int:
    """Block length for a circular block bootstrap of the mean of an autocorrelated series, chosen by the rule of
    Politis & White (2004) with the correction of Patton, Politis & White (2009)."""
    x = np.asarray(series, float)
    n = len(x)
    x = x - x.mean()
    max_block = math.ceil(min(3 * math.sqrt(n), n / 3))
    kn = max(5, math.ceil(math.log10(n)))
    max_lag = math.ceil(math.sqrt(n)) + kn
    acov = np.array([x[: n - k] @ x[k:] / n for k in range(max_lag + 1)])
    if acov[0] == 0:
        return 1
    rho = np.abs(acov[1:] / acov[0])
    threshold = 2 * math.sqrt(math.log10(n) / n)
    m = next((lag for lag in range(max_lag - kn + 1) if (rho[lag : lag + kn] < threshold).all()), max_lag - kn)
    bandwidth = min(2 * max(m, 1), max_lag)
    lags = np.arange(-bandwidth, bandwidth + 1)
    t = np.abs(lags) / bandwidth
    flat_top = np.where(t <= 0.5, 1.0, np.where(t <= 1.0, 2 * (1 - t), 0.0))
    weighted = flat_top * acov[np.abs(lags)]
    g = (np.abs(lags) * weighted).sum()
    d_circular = 4 / 3 * weighted.sum() ** 2
    if d_circular == 0:
        return 1
    block = (2 * g**2 / d_circular) ** (1 / 3) * n ** (1 / 3)
    return int(min(max(round(block), 1), max_block))


def paired_block_bootstrap(
    differences: dict, n_resamples: int = 20_000, seed: int = 0, block: int | None = None
) -> dict:
    """Means of per-step differences between two runs that saw the same questions at each step (same seed), with 95%
    intervals from a circular block bootstrap. ``differences`` maps a metric to its per-step differences, all on the
    same steps; every metric is resampled with the same blocks. The block length, unless given, is the longest
    ``politis_white_block_length`` among the metrics: one length for all, the conservative choice. 20,000 resamples
    keep the ends of the intervals steady in the third decimal across bootstrap seeds."""
    series = {name: np.asarray(values, float) for name, values in differences.items()}
    n = len(next(iter(series.values())))
    if any(len(d) != n or not np.isfinite(d).all() for d in series.values()):
        raise ValueError("A paired bootstrap needs finite differences on the same steps for every metric.")
    block = block or max(politis_white_block_length(d) for d in series.values())
    full_blocks, rest = divmod(n, block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_resamples, full_blocks + (rest > 0)))
    lengths = np.full(starts.shape[1], block)
    if rest:
        lengths[-1] = rest
    results = {}
    for name, d in series.items():
        cumulative = np.concatenate([[0.0], np.cumsum(np.concatenate([d, d]))])  # circular: the series wraps around
        means = (cumulative[starts + lengths] - cumulative[starts]).sum(axis=1) / n
        low, high = np.percentile(means, [2.5, 97.5])
        results[name] = {"difference": float(d.mean()), "ci95": [float(low), float(high)]}
    return {
        "metrics": results,
        "n_steps": n,
        "block_length": block,
        "n_resamples": n_resamples,
        "seed": seed,
        "method": "paired circular block bootstrap of per-step differences, percentile 95% interval",
        "block_rule": "longest Politis-White (2004; Patton-Politis-White 2009) length among the metrics",
    }


def pearson_with_ci(x, y) -> dict:
    """Pearson correlation with a 95% interval (Fisher z). Steps of a run are autocorrelated, so read the interval as
    optimistic for step-level data."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[keep], y[keep], int(keep.sum())
    if n < 4 or x.std() == 0 or y.std() == 0:
        return {"r": float("nan"), "ci95": (float("nan"), float("nan")), "n": n}
    r = float(np.corrcoef(x, y)[0, 1])
    z, se = math.atanh(max(min(r, 0.999999), -0.999999)), 1 / math.sqrt(n - 3)
    return {"r": r, "ci95": (math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)), "n": n}


def format_interval(value, ci, digits: int = 3, signed: bool = False, unit: str = "") -> str:
    """``value [low, high]`` at ``digits`` decimals, with ``+`` signs for a difference; ``unit`` follows the value."""
    spec = f"{'+' if signed else ''}.{digits}f"
    return f"{value:{spec}}{unit} [{ci[0]:{spec}}, {ci[1]:{spec}}]"


def t_interval(values) -> dict:
    """Mean of per-seed values with a 95% Student-t interval over seeds (it reflects seed-to-seed spread; with one
    seed there is no interval)."""
    from scipy import stats

    values = np.asarray(values, float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": [float("nan"), float("nan")], "sd": float("nan"), "seeds": n}
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "sd": sd, "seeds": n}


def seed_stratified_test(a_by_seed: list, b_by_seed: list) -> dict:
    """Whether B's accuracy differs from A's, pooling the seeds without pretending they are one run: a
    Cochran-Mantel-Haenszel test over one 2x2 table (experiment x correct) per seed, each on the same questions, and
    the common odds ratio of B against A with its 95% interval (statsmodels' StratifiedTable)."""
    from statsmodels.stats.contingency_tables import StratifiedTable

    tables = []
    for a, b in zip(a_by_seed, b_by_seed):
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        tables.append(np.array([[b.sum(), (~b).sum()], [a.sum(), (~a).sum()]], float))
    if all(t[:, 0].sum() in (0, t.sum()) for t in tables):  # every answer right, or every one wrong, in each seed
        return {
            "test": "Cochran-Mantel-Haenszel, stratified by seed",
            "statistic": 0.0,
            "p_value": 1.0,
            "odds_ratio_b_vs_a": float("nan"),
            "odds_ratio_ci95": [float("nan"), float("nan")],
            "seeds": len(tables),
            "note": "no seed has both right and wrong answers: nothing tells the experiments apart",
        }
    stratified = StratifiedTable(tables)
    test = stratified.test_null_odds(correction=True)
    low, high = stratified.oddsratio_pooled_confint()
    return {
        "test": "Cochran-Mantel-Haenszel, stratified by seed",
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "odds_ratio_b_vs_a": float(stratified.oddsratio_pooled),
        "odds_ratio_ci95": [float(low), float(high)],
        "seeds": len(tables),
    }
