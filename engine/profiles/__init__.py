"""Visitor and customer profiles: their shapes (``shapes``), how they are stored (``codec``), how one
event changes them (``fold``), consent (``consent``), and what readers take from them (``visits``,
``view``, ``affinity``). ``GET /v1/profiles/{id}`` shows them readable.

Callers import from the module that owns a name; only the profile shapes are re-exported here.
"""

from engine.profiles.shapes import CustomerProfile, ProfileConfig, VisitorProfile

__all__ = ["CustomerProfile", "ProfileConfig", "VisitorProfile"]
