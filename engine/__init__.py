"""Vitrine's engine: profiles, catalogue, recommendation scenarios. No HTTP, no Kafka in here."""
