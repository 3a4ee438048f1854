"""Offline side of Vitrine: turning interaction history into versioned model artifacts.

Nothing here imports engine/, api/ or streaming/: the online side depends on the artifacts this
package writes, never the other way round.
"""
