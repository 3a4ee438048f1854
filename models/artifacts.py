"""Versioned model artifacts on disk.

A version is a directory ``<models_dir>/<UTC time>-<6 hex>`` holding numpy arrays and a
``meta.json`` (data window, parameters, metrics, time). It is written under a temporary name and
renamed into place, so a reader never sees half an artifact. ``CURRENT`` names the version being
served; training promotes a version by rewriting it (atomically, via rename as well), and API
processes poll it, so every replica swaps to the new model without a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, load_npz, save_npz

from models.sknn import SessionIndex

CURRENT = "CURRENT"
FORMAT = 1


@dataclass
class Artifact:
    item_ids: list[str]
    user_ids: list[str]
    item_factors: np.ndarray  # float32 (items, factors)
    user_items: csr_matrix  # the confidences the users were trained on (for fold-in)
    similar_index: np.ndarray  # int32 (items, K), -1 padded
    similar_score: np.ndarray
    complement_index: np.ndarray
    complement_score: np.ndarray
    popularity: np.ndarray  # float32 (items,)
    meta: dict[str, Any] = field(default_factory=dict)
    user_recent: csr_matrix | None = None  # user_items decayed by age (engine.ranking.blend's history signal)
    session_index: SessionIndex | None = None  # recent sessions per item (models.sknn)
    sequence_index: np.ndarray | None = None  # int32 (items, K): what follows each item (models.seqrules)
    sequence_score: np.ndarray | None = None

    @property
    def version(self) -> str:
        return str(self.meta.get("version", ""))


def new_version(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(3)}"


def save(artifact: Artifact, models_dir: Path) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    version = artifact.meta.setdefault("version", new_version())
    artifact.meta.setdefault("format", FORMAT)
    artifact.meta.setdefault("created_at", time.time())
    tmp = models_dir / f".tmp-{version}"
    tmp.mkdir()
    np.savez(
        tmp / "arrays.npz",
        item_factors=artifact.item_factors.astype(np.float32),
        similar_index=artifact.similar_index,
        similar_score=artifact.similar_score,
        complement_index=artifact.complement_index,
        complement_score=artifact.complement_score,
        popularity=artifact.popularity.astype(np.float32),
    )
    save_npz(tmp / "user_items.npz", artifact.user_items.tocsr())
    if artifact.user_recent is not None:
        save_npz(tmp / "user_recent.npz", artifact.user_recent.tocsr())
    if artifact.session_index is not None and artifact.sequence_index is not None:
        np.savez(tmp / "sessions.npz", sequence_index=artifact.sequence_index,
                 sequence_score=artifact.sequence_score, **artifact.session_index.arrays())
    (tmp / "ids.json").write_text(json.dumps({"items": artifact.item_ids, "users": artifact.user_ids}))
    (tmp / "meta.json").write_text(json.dumps(artifact.meta, indent=2, sort_keys=True))
    final = models_dir / version
    os.rename(tmp, final)
    return final


def load(path: Path) -> Artifact:
    arrays = np.load(path / "arrays.npz")
    ids = json.loads((path / "ids.json").read_text())
    sessions = dict(np.load(path / "sessions.npz")) if (path / "sessions.npz").exists() else None
    return Artifact(
        item_ids=ids["items"],
        user_ids=ids["users"],
        item_factors=arrays["item_factors"],
        user_items=load_npz(path / "user_items.npz").tocsr(),
        similar_index=arrays["similar_index"],
        similar_score=arrays["similar_score"],
        complement_index=arrays["complement_index"],
        complement_score=arrays["complement_score"],
        popularity=arrays["popularity"],
        meta=json.loads((path / "meta.json").read_text()),
        user_recent=load_npz(path / "user_recent.npz").tocsr() if (path / "user_recent.npz").exists() else None,
        session_index=SessionIndex.from_arrays(sessions) if sessions else None,
        sequence_index=sessions["sequence_index"] if sessions else None,
        sequence_score=sessions["sequence_score"] if sessions else None,
    )


def versions(models_dir: Path) -> list[str]:
    """Complete versions, oldest first (names sort by creation time)."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "meta.json").exists())


def current_version(models_dir: Path) -> str | None:
    """The promoted version, or the newest one when nothing was ever promoted."""
    pointer = models_dir / CURRENT
    if pointer.exists():
        name = pointer.read_text().strip()
        if name and (models_dir / name / "meta.json").exists():
            return name
    found = versions(models_dir)
    return found[-1] if found else None


def promote(models_dir: Path, version: str) -> None:
    if not (models_dir / version / "meta.json").exists():
        raise FileNotFoundError(f"no model version {version!r} in {models_dir}")
    tmp = models_dir / f".{CURRENT}.{secrets.token_hex(3)}"
    tmp.write_text(version + "\n")
    os.replace(tmp, models_dir / CURRENT)


def prune(models_dir: Path, keep: int, protect: Collection[str] = ()) -> list[str]:
    """Delete all but the newest ``keep`` versions, never the current one nor those in ``protect``
    (the roll-back target: newer versions may all be models the gate rejected)."""
    spared = {current_version(models_dir), *protect}
    old = [v for v in versions(models_dir)[:-keep] if v not in spared] if keep > 0 else []
    for name in old:
        shutil.rmtree(models_dir / name, ignore_errors=True)
    return old
