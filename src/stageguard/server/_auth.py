"""Authentication: API keys (``Authorization: Bearer sgk_...`` or ``Galileo-API-Key``) or the signed,
expiring tokens that ``POST /login/api_key`` hands out (Galileo's login flow).

Tokens name their key; the key record (role, revocation) is re-read from the database at most every
``cache_ttl`` seconds, so a revoked key stops working within that delay on every server process, even
with tokens still unexpired.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ._errors import ApiError, unauthorized
from ._keys import ApiKey, KeyStore, Role, looks_like_key

ISSUER = "stageguard"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key, bound to one project."""

    key_id: str
    project_id: str
    project_name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin


class Authenticator:
    """Checks credentials and issues tokens. Thread-safe; one per server process."""

    def __init__(self, keys: KeyStore, secret: str, *, token_ttl: float, cache_ttl: float = 5.0) -> None:
        self.keys = keys
        self.token_ttl = token_ttl
        self.cache_ttl = cache_ttl
        self._secret = secret
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}
        self._by_secret: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    # -- keys, cached briefly

    def _cached(self, cache: dict[str, tuple[float, ApiKey | None]], name: str, load: str) -> ApiKey | None:
        now = time.monotonic()
        with self._lock:
            hit = cache.get(name)
        if hit is not None and now - hit[0] < self.cache_ttl:
            return hit[1]
        key = self.keys.get(name) if load == "id" else self.keys.find(name)
        with self._lock:
            if len(cache) > 10_000:  # bounded: unknown keys must not grow it forever
                cache.clear()
            cache[name] = (now, key)
        return key

    def check_key(self, secret: str) -> ApiKey:
        """The active key with this secret, else 401."""
        key = self._cached(self._by_secret, secret, "secret") if looks_like_key(secret) else None
        if key is None:
            raise unauthorized("invalid API key")
        if not key.active:
            raise unauthorized(f"API key {key.prefix}... was revoked")
        return key

    # -- tokens

    def issue(self, key: ApiKey) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": key.id,
            "project_id": key.project_id,
            "role": key.role.value,
            "iat": now,
            "exp": now + int(self.token_ttl),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def check_token(self, token: str) -> ApiKey:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired: log in again (POST /login/api_key)") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"invalid token: {exc}") from None
        key = self._cached(self._by_id, str(claims["sub"]), "id")
        if key is None or not key.active:
            raise unauthorized("the API key of this token was revoked or deleted")
        return key

    def principal(self, credential: str) -> Principal:
        key = self.check_key(credential) if looks_like_key(credential) else self.check_token(credential)
        return Principal(key.id, key.project_id, key.project_name, key.role)


_bearer = HTTPBearer(auto_error=False, description="An API key (sgk_...) or a token from /login/api_key")
_api_key_header = APIKeyHeader(name="Galileo-API-Key", auto_error=False, description="An API key")


async def _principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    auth: Authenticator = request.app.state.stageguard.auth
    credential = api_key or (bearer.credentials if bearer is not None else None)
    if not credential:
        raise unauthorized(
            "missing credentials: send 'Authorization: Bearer <API key or token>' "
            "(tokens come from POST /login/api_key)"
        )
    return auth.principal(credential)


async def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not principal.is_admin:
        raise ApiError(
            403,
            f"this API key has role '{principal.role.value}': managing stages needs an 'admin' key",
        )
    return principal


Caller = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_admin)]


def own_project(caller: Principal, project_id: str) -> None:
    """403 unless ``project_id`` is the caller's project: a key never reaches another project."""
    if str(project_id) != caller.project_id:
        raise ApiError(
            403,
            f"this API key belongs to project {caller.project_name!r} and cannot access project {project_id}",
        )
