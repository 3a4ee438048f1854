"""Behaviour triggers: scheduling, suppression, delivery and their report (README.md). What the
rules file may say about them is ``engine.merch.schema``."""
