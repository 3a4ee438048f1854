"""A worker's applier process: the faust consumer hands it batches, it applies them to Redis.

``vitrine worker`` is two processes. The consumer (``streaming.app``) runs faust's per-message
path on one core; its applier (``child``), started and owned by it (``client``), runs the
engine (decode, fold, the Redis scripts) on another, so the two overlap instead of taking turns
on one event loop. They talk over a socket pair in length-prefixed frames (``frames``).
"""
