import numpy as np
import pytest

from utils.stats import (
    bootstrap_mean,
    mcnemar_exact,
    paired_block_bootstrap,
    pearson_with_ci,
    politis_white_block_length,
    wilson_interval,
)


def test_wilson_interval_known_values():
    low, high = wilson_interval(40, 100)
    assert (round(low, 4), round(high, 4)) == (0.3094, 0.4980)  # standard Wilson 95% for 40/100
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert np.isnan(wilson_interval(0, 0)[0])


def test_mcnemar_counts_only_discordant_pairs():
    a = [True] * 50 + [True] * 10 + [False] * 2 + [False] * 38
    b = [True] * 50 + [False] * 10 + [True] * 2 + [False] * 38
    result = mcnemar_exact(a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 2)
    assert result["p_value"] == pytest.approx(0.0386, abs=1e-4)  # exact binomial, 2 of 12 discordant
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_the_bootstrap_matches_a_direct_resampling_loop():
    values = np.random.default_rng(7).random(40)
    result = bootstrap_mean(values, seed=3)
    draws = np.random.default_rng(3).integers(0, len(values), size=(2000, len(values)))
    means = [float(np.mean([values[i] for i in row])) for row in draws]  # one resample at a time
    assert result["ci95"] == pytest.approx(list(np.percentile(means, [2.5, 97.5])))
    assert result["mean"] == pytest.approx(values.mean()) and result["n"] == 40


def test_a_paired_bootstrap_interval_covers_the_difference():
    rng = np.random.default_rng(1)
    x = rng.normal(10, 1, 500)
    result = bootstrap_mean(x - (x - 1 + rng.normal(0, 0.1, 500)))
    assert result["ci95"][0] < result["mean"] < result["ci95"][1] and result["ci95"][0] > 0.95


def ar1(phi, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal()
    return x


def test_politis_white_picks_longer_blocks_for_stronger_autocorrelation():
    assert politis_white_block_length(np.random.default_rng(0).normal(size=1000)) <= 3
    assert politis_white_block_length(ar1(0.5)) < politis_white_block_length(ar1(0.95))


def test_paired_block_bootstrap_widens_with_autocorrelation_and_shares_blocks():
    noise = np.random.default_rng(2).normal(size=1000)
    white = paired_block_bootstrap({"x": noise}, n_resamples=4000)
    persistent = paired_block_bootstrap({"x": ar1(0.9, seed=2)}, n_resamples=4000)
    width = {
        name: r["metrics"]["x"]["ci95"][1] - r["metrics"]["x"]["ci95"][0]
        for name, r in (("white", white), ("persistent", persistent))
    }
    assert width["persistent"] > 3 * width["white"]  # an AR(0.9) mean is far less certain than white noise's
    joint = paired_block_bootstrap({"white": noise, "persistent": ar1(0.9, seed=2)}, n_resamples=4000)
    assert joint["block_length"] == persistent["block_length"]  # the longest rule length serves both
    with pytest.raises(ValueError, match="same steps"):
        paired_block_bootstrap({"a": [1.0, 2.0], "b": [1.0]})


def test_pearson_with_ci():
    x = np.arange(100.0)
    result = pearson_with_ci(x, 2 * x + np.random.default_rng(0).normal(0, 5, 100))
    assert result["r"] > 0.99 and result["ci95"][0] < result["r"] < result["ci95"][1] and result["n"] == 100
    assert np.isnan(pearson_with_ci([1, 1, 1, 1], [1, 2, 3, 4])["r"])
