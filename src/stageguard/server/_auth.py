"""Authentication: API keys (``Authorization: Bearer sgk_...`` or ``Galileo-API-Key``) or the signed,
expiring tokens that ``POST /login/api_key`` hands out (Galileo's login flow).

Tokens name their key; the key record (role, revocation) is re-read from the database at most every
``cache_ttl`` seconds, so a revoked key stops working within that delay on every server process, even
with tokens still unexpired.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..errors import StoreUnavailableError
from ._errors import ApiError, unauthorized
from ._keys import ApiKey, KeyStore, Role, looks_like_key

logger = logging.getLogger("stageguard.server")

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

    def __init__(
        self,
        keys: KeyStore,
        secret: str,
        *,
        token_ttl: float,
        cache_ttl: float = 5.0,
        stale_grace: float = 3600.0,
    ) -> None:
        self.keys = keys
        self.token_ttl = token_ttl
        self.cache_ttl = cache_ttl
        self.stale_grace = stale_grace
        self._secret = secret
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}
        self._by_secret: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()
        self._warned = -float("inf")

    # -- keys, cached briefly

    def _fresh(self, cache: dict[str, tuple[float, ApiKey | None]], name: str) -> tuple[bool, ApiKey | None]:
        with self._lock:
            hit = cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.cache_ttl:
            return True, hit[1]
        return False, None

    def _load(self, cache: dict[str, tuple[float, ApiKey | None]], name: str, load: str) -> ApiKey | None:
        """Read the key record. While the database is unreachable, a record read less than
        ``stale_grace`` seconds ago keeps being trusted (invokes go on); otherwise 503."""
        now = time.monotonic()
        try:
            key = self.keys.get(name) if load == "id" else self.keys.find(name)
        except StoreUnavailableError as exc:
            with self._lock:
                hit = cache.get(name)
            if hit is None or hit[1] is None or now - hit[0] > self.stale_grace:
                raise
            if now - self._warned > 30:
                self._warned = now
                logger.warning("key database unavailable, trusting key records read before: %s", exc)
            return hit[1]
        with self._lock:
            if len(cache) > 10_000:  # bounded: unknown keys must not grow it forever
                cache.clear()
            cache[name] = (now, key)
        return key

    def _cached(self, cache: dict[str, tuple[float, ApiKey | None]], name: str, load: str) -> ApiKey | None:
        fresh, key = self._fresh(cache, name)
        return key if fresh else self._load(cache, name, load)

    async def _acached(
        self, cache: dict[str, tuple[float, ApiKey | None]], name: str, load: str
    ) -> ApiKey | None:
        """As ``_cached``, reading the database on a worker thread (never on the event loop)."""
        fresh, key = self._fresh(cache, name)
        return key if fresh else await run_in_threadpool(self._load, cache, name, load)

    @staticmethod
    def _active(key: ApiKey | None) -> ApiKey:
        if key is None:
            raise unauthorized("invalid API key")
        if not key.active:
            raise unauthorized(f"API key {key.prefix}... was revoked")
        return key

    def check_key(self, secret: str) -> ApiKey:
        """The active key with this secret, else 401."""
        key = self._cached(self._by_secret, secret, "secret") if looks_like_key(secret) else None
        return self._active(key)

    async def acheck_key(self, secret: str) -> ApiKey:
        """:meth:`check_key` for the event loop (the database is read on a worker thread)."""
        key = await self._acached(self._by_secret, secret, "secret") if looks_like_key(secret) else None
        return self._active(key)

    # -- tokens

    def sign(self, message: str) -> str:
        """An HMAC of ``message`` under the server's secret (the console's CSRF tokens)."""
        return hmac.new(self._secret.encode(), message.encode(), hashlib.sha256).hexdigest()

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

    def _claims(self, token: str) -> dict[str, object]:
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
        return dict(claims)

    @staticmethod
    def _token_key(key: ApiKey | None) -> ApiKey:
        if key is None or not key.active:
            raise unauthorized("the API key of this token was revoked or deleted")
        return key

    def check_token(self, token: str) -> ApiKey:
        claims = self._claims(token)
        return self._token_key(self._cached(self._by_id, str(claims["sub"]), "id"))

    def principal(self, credential: str) -> Principal:
        key = self.check_key(credential) if looks_like_key(credential) else self.check_token(credential)
        return Principal(key.id, key.project_id, key.project_name, key.role)

    async def aprincipal(self, credential: str) -> Principal:
        """:meth:`principal` for the event loop: cache misses read the database on a worker thread."""
        if looks_like_key(credential):
            key = await self.acheck_key(credential)
        else:
            claims = self._claims(credential)
            key = self._token_key(await self._acached(self._by_id, str(claims["sub"]), "id"))
        return Principal(key.id, key.project_id, key.project_name, key.role)


_bearer = HTTPBearer(auto_error=False, description="An API key (sgk_...) or a token from /login/api_key")
_api_key_header = APIKeyHeader(name="Galileo-API-Key", auto_error=False, description="An API key")


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def _authenticated(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """The caller, within its key's rate limit. Failed authentications are limited per client address,
    requests per key: 429 with ``Retry-After``."""
    state = request.app.state.stageguard
    auth: Authenticator = state.auth
    credential = api_key or (bearer.credentials if bearer is not None else None)
    client = client_address(request)
    async with state.gate.counting_failures(client):
        if not credential:
            raise unauthorized(
                "missing credentials: send 'Authorization: Bearer <API key or token>' "
                "(tokens come from POST /login/api_key)"
            )
        principal = await auth.aprincipal(credential)
    await state.gate.hit(principal.key_id)
    return principal


async def _principal(
    request: Request, principal: Annotated[Principal, Depends(_authenticated)]
) -> AsyncIterator[Principal]:
    """The caller, holding one of its key's in-progress slots for the whole request (429 when all are
    taken)."""
    with request.app.state.stageguard.gate.in_progress(principal.key_id):
        yield principal


def require_admin(principal: Principal) -> None:
    """403 unless ``principal`` has an ``admin`` key (the API and the console say the same)."""
    if not principal.is_admin:
        raise ApiError(
            403,
            f"this API key has role '{principal.role.value}': managing stages needs an 'admin' key",
        )


async def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    require_admin(principal)
    return principal


Caller = Annotated[Principal, Depends(_principal)]
# The caller without an in-progress slot: for the invoke route, which holds ``gate.in_progress`` itself
# (a generator dependency costs FastAPI about 120 µs per request, 5 % of an invoke of four metrics).
Authenticated = Annotated[Principal, Depends(_authenticated)]
Admin = Annotated[Principal, Depends(_admin)]


def own_project(caller: Principal, project_id: str) -> None:
    """403 unless ``project_id`` is the caller's project: a key never reaches another project."""
    if str(project_id) != caller.project_id:
        raise ApiError(
            403,
            f"this API key belongs to project {caller.project_name!r} and cannot access project {project_id}",
        )
