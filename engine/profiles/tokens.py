"""Customer tokens: proof, made by the site's backend, that a page speaks for a logged-in customer.

A customer id is a name anyone can type; reading a customer's profile or stitching a cookie to it
needs more than the name. The site's backend, which knows who logged in, signs the id with the
secret it shares with Vitrine (``VITRINE_IDENTITY_SECRET``); the browser carries the signature.
"""

from __future__ import annotations

import hashlib
import hmac


def customer_token(secret: str, customer_id: str) -> str:
    """``HMAC-SHA256(secret, customer_id)`` in lowercase hex: what the site computes at login."""
    return hmac.new(secret.encode(), customer_id.encode(), hashlib.sha256).hexdigest()


def verify_customer_token(secret: str, customer_id: str, token: object) -> bool:
    """Whether ``token`` is ``customer_id``'s token, compared in constant time (no timing oracle)."""
    if not isinstance(token, str):
        return False
    return hmac.compare_digest(customer_token(secret, customer_id).encode(), token.encode())
