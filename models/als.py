"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via the implicit library."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix


@dataclass(frozen=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15
    random_state: int = 42

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def train_als(user_items: csr_matrix, params: ALSParams) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=params.alpha,
        iterations=params.iterations,
        random_state=params.random_state,
        calculate_training_loss=False,
        num_threads=0,  # training is offline: use every core
    )
    model.fit(user_items, show_progress=False)
    return model
