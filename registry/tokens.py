"""Bearer tokens: minting, hashing, checking, scopes.

A token reads ``phig_<id>_<secret>``: ``id`` (16 hex) finds the row, the
32-byte random ``secret`` is stored only as its sha256 (a high-entropy secret
needs no slow hash), compared in constant time.  Scopes, space-separated:

* ``admin``: everything (publish to any model, yank);
* ``publish:<model>``: publish and yank that model (canonical name);
* ``publish:*``: publish and yank any model.

A blob upload names the model it is for (``?model=``) and needs a scope that
covers it, like the manifest commit: a foreign-scope token writes nothing.

Imports sqlmodel and :mod:`phi_get.manifests` only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from phi_get.manifests.names import check_model_name
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from .errors import AuthError, BadRequestError, ForbiddenError, NotFoundError
from .tables import TokenRow

__all__ = ["Principal", "authenticate", "check_scope", "list_tokens", "mint_token", "revoke_token"]

_TOKEN: Final = re.compile(r"^phig_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who a request acts as: a token id and its scopes."""

    token_id: str
    scopes: frozenset[str]

    def can_publish(self, model: str | None = None) -> bool:
        if "admin" in self.scopes or "publish:*" in self.scopes:
            return True
        if model is None:
            return any(s.startswith("publish:") for s in self.scopes)
        return f"publish:{model}" in self.scopes

    def require_publish(self, model: str | None = None) -> None:
        if not self.can_publish(model):
            what = f"model {model!r}" if model else "any model"
            raise ForbiddenError(
                f"token {self.token_id} may not publish to {what} (scopes: {' '.join(sorted(self.scopes))})"
            )


def check_scope(scope: str) -> str:
    """Validate one scope and return it with the model name canonicalized."""
    if scope in ("admin", "publish:*"):
        return scope
    if scope.startswith("publish:"):
        try:
            return "publish:" + check_model_name(scope.removeprefix("publish:"), "scope", "token")
        except ValueError:
            pass
    raise BadRequestError(f"invalid token scope {scope!r}: expected admin, publish:* or publish:<model>")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def mint_token(engine: Engine, scopes: list[str], *, expires_in_s: float | None = None, note: str = "") -> str:
    """Create a token; the returned string is the only copy of its secret."""
    if not scopes:
        raise BadRequestError("a token needs at least one scope (admin, publish:* or publish:<model>)")
    checked = sorted({check_scope(s) for s in scopes})
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = time.time()
    row = TokenRow(
        id=token_id, secret_sha256=_hash(secret), scopes=" ".join(checked), note=note[:256], created=now,
        expires=None if expires_in_s is None else now + expires_in_s,
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
    return f"phig_{token_id}_{secret}"


def authenticate(engine: Engine, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer`` header, or AuthError.

    Messages never include the presented token.
    """
    if not authorization:
        raise AuthError("no token: this request needs 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("malformed Authorization header: expected 'Bearer <token>'")
    match = _TOKEN.match(token.strip())
    if not match:
        raise AuthError("invalid token: not a phi-get token (phig_<id>_<secret>)")
    token_id, secret = match.groups()
    with Session(engine) as session:
        row = session.get(TokenRow, token_id)
    if row is None or not hmac.compare_digest(row.secret_sha256, _hash(secret)):
        raise AuthError("invalid token: unknown id or wrong secret")
    if row.revoked:
        raise AuthError(f"token {token_id} is revoked")
    if row.expires is not None and row.expires <= time.time():
        raise AuthError(f"token {token_id} expired", hint="mint a new one with 'phi-get registry token create'")
    return Principal(token_id=token_id, scopes=frozenset(row.scopes.split()))


def revoke_token(engine: Engine, token_id: str) -> None:
    with Session(engine) as session:
        row = session.get(TokenRow, token_id)
        if row is None:
            raise NotFoundError(f"no token with id {token_id!r}")
        row.revoked = True
        session.add(row)
        session.commit()


def list_tokens(engine: Engine) -> list[dict[str, object]]:
    """Every token's id, scopes, note and times; never a secret or its hash."""
    with Session(engine) as session:
        rows = session.exec(select(TokenRow).order_by(col(TokenRow.created))).all()
    return [
        {"id": r.id, "scopes": r.scopes, "note": r.note, "created": r.created, "expires": r.expires,
         "revoked": r.revoked}
        for r in rows
    ]
