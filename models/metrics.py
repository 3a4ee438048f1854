"""Top-k ranking metrics with binary relevance, averaged over the people evaluated.

For one person with ranked list ``r`` and target set ``t`` (the items they went on to use):
- Recall@k  = |r[:k] ∩ t| / |t|
- NDCG@k    = DCG(r[:k]) / DCG(ideal list of min(|t|, k) hits), gains 1 / log2(rank + 1)
- MRR@k     = 1 / rank of the first hit within k (0 without one)
- HitRate@k = 1 if any hit within k
and over all people, Coverage@k = distinct items in anyone's top k / items in the catalogue.
Targets that no method could rank (items unknown to the training data) still count in |t|: the
numbers are for the full catalogue, with no sampled negatives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS: tuple[str, ...] = ("recall", "ndcg", "mrr", "hit_rate", "coverage")


def metric_name(metric: str, k: int) -> str:
    return f"{metric}@{k}"


def per_person(ranked: Sequence[Sequence[str]], targets: Sequence[set[str]], k: int) -> dict[str, np.ndarray]:
    """Recall, NDCG, MRR and hit (0/1) at ``k`` for each person, in input order."""
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} rankings for {len(targets)} target sets")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = {m: np.zeros(len(ranked)) for m in ("recall", "ndcg", "mrr", "hit_rate")}
    for n, (items, wanted) in enumerate(zip(ranked, targets)):
        top = list(dict.fromkeys(items))[:k]
        hit = np.fromiter((item in wanted for item in top), dtype=bool, count=len(top))
        if wanted and hit.any():
            out["recall"][n] = hit.sum() / len(wanted)
            out["ndcg"][n] = discounts[:len(top)][hit].sum() / discounts[:min(len(wanted), k)].sum()
            out["mrr"][n] = 1.0 / (int(np.argmax(hit)) + 1)
            out["hit_rate"][n] = 1.0
    return out


def ranking_metrics(ranked: Sequence[Sequence[str]], targets: Sequence[set[str]], ks: Sequence[int],
                    catalogue_size: int) -> dict[str, float]:
    """``{"recall@10": ..., "ndcg@20": ...}`` for parallel lists of rankings and target sets."""
    out: dict[str, float] = {}
    for k in ks:
        for metric, values in per_person(ranked, targets, k).items():
            out[metric_name(metric, k)] = float(values.mean()) if len(values) else 0.0
        shown = {item for items in ranked for item in list(dict.fromkeys(items))[:k]}
        out[metric_name("coverage", k)] = len(shown) / catalogue_size if catalogue_size else 0.0
    return out


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, seed: int, draws: int = 2000) -> tuple[float, float]:
    """95% interval of mean(a) / mean(b) over people resampled with replacement (paired)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(draws, len(a)))
    means_b = b[picks].mean(axis=1)
    ratios = a[picks].mean(axis=1)[means_b > 0] / means_b[means_b > 0]
    low, high = np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (float("nan"), float("nan"))
    return float(low), float(high)
