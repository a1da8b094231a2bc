"""How a REDACT action replaces what triggered it, and the vault that makes pseudonyms reversible.

Strategies (``RedactAction(strategy=...)``; see ``docs/redaction.md``):

- ``placeholder`` (default): ``<EMAIL>``, the action's ``placeholder`` with ``{label}`` filled in.
- ``mask``: same length; letters and digits become ``*``, other characters stay (``*****@*******.***``);
  card, phone and account numbers with at least 8 digits keep their last 4 digits
  (``****-****-****-1111``); a password is masked entirely.
- ``hash``: ``<EMAIL:3f2a9c1b>``, the first 8 hex digits of HMAC-SHA256 of the value: the same value gives
  the same token (so logs and analytics can still count and join), but it can't be turned back. The key
  is random per process unless ``STAGEGUARD_REDACTION_KEY`` or :func:`set_hash_key` sets one (needed for
  tokens that match across processes or restarts). Irreversible.
- ``pseudonym``: ``<EMAIL_1>``, ``<EMAIL_2>``, ...: the same value gets the same pseudonym for as long
  as the :class:`Vault` of the run lives, and :meth:`Vault.restore` puts the values back (in the final
  answer, in a tool's arguments), so an agent can act on data the model never saw.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Iterable
from typing import Any, Literal, NoReturn

from .scorers.base import Span, merge_spans

RedactionStrategy = Literal["placeholder", "mask", "hash", "pseudonym"]
STRATEGIES: tuple[str, ...] = ("placeholder", "mask", "hash", "pseudonym")

HASH_KEY_ENV = "STAGEGUARD_REDACTION_KEY"
# Labels whose values are numbers people recognise by their last 4 digits (receipts, statements).
LAST_FOUR_LABELS = frozenset({"credit_card_info", "phone_number", "account_info"})
FULL_MASK_LABELS = frozenset({"password"})

_hash_key: bytes | None = None
_key_lock = threading.Lock()
# A pseudonym or hash token: ``<EMAIL_1>``, ``<CREDIT_CARD_INFO_12>``.
_PSEUDONYM = re.compile(r"<[A-Z0-9_]+_[0-9]+>")


def token_label(label: str) -> str:
    """``label`` as it appears in a token: upper case, runs of other characters as ``_``."""
    return re.sub(r"[^A-Z0-9]+", "_", label.upper()).strip("_") or "REDACTED"


def set_hash_key(key: str | bytes | None) -> None:
    """Use ``key`` for the ``hash`` strategy from now on (``None``: back to ``STAGEGUARD_REDACTION_KEY``,
    or a random key for this process). A key set this way or in the environment makes tokens match
    across processes; keep it secret: with it, a short value (a phone number) can be guessed by trying."""
    global _hash_key
    if key is not None and not isinstance(key, (str, bytes)):
        raise TypeError(f"the hash key must be str or bytes, got {type(key).__name__}")
    if key is not None and not key:
        raise ValueError("the hash key must not be empty")
    with _key_lock:
        _hash_key = key.encode() if isinstance(key, str) else key


def _key() -> bytes:
    global _hash_key
    if _hash_key is None:
        with _key_lock:
            if _hash_key is None:
                configured = os.environ.get(HASH_KEY_ENV)
                _hash_key = configured.encode() if configured else secrets.token_bytes(32)
    return _hash_key


def hash_token(label: str, value: str) -> str:
    """The ``hash`` strategy's token for ``value``: ``<LABEL:8 hex digits of HMAC-SHA256>``."""
    digest = hmac.new(_key(), value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"<{token_label(label)}:{digest[:8]}>"


def mask(label: str, value: str) -> str:
    """The ``mask`` strategy: ``value`` at the same length, letters and digits as ``*`` (see module doc)."""
    if label.lower() in FULL_MASK_LABELS:
        return "".join(c if c.isspace() else "*" for c in value)
    keep_from = len(value)
    if label.lower() in LAST_FOUR_LABELS:
        digits = [i for i, c in enumerate(value) if c.isdigit()]
        if len(digits) >= 8:
            keep_from = digits[-4]
    return "".join("*" if i < keep_from and c.isalnum() else c for i, c in enumerate(value))


class Vault:
    """The pseudonyms of one run and the values behind them, in this process's memory only.

    Pass the same vault to every invoke of a run (``protect.invoke(..., vault=vault)``) so a value keeps
    its pseudonym, then :meth:`restore` the model's answer or :meth:`restore_json` a tool's arguments.
    A vault is never logged, serialised or sent anywhere: its ``repr`` shows only how many pseudonyms it
    holds, pickling it is a ``TypeError``, and ``copy``/``deepcopy`` return the vault itself (a handle on
    the run's memory, like a lock). Thread-safe.
    """

    __slots__ = ("_counts", "_lock", "_pseudonyms", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pseudonyms: dict[tuple[str, str], str] = {}  # (label, value) -> pseudonym
        self._values: dict[str, str] = {}  # pseudonym -> value
        self._counts: dict[str, int] = {}  # label -> pseudonyms numbered so far

    def pseudonym(self, label: str, value: str) -> str:
        """The pseudonym of ``value`` (``<EMAIL_1>``): the one it already has, else the label's next."""
        name = token_label(label)
        with self._lock:
            known = self._pseudonyms.get((name, value))
            if known is not None:
                return known
            number = self._counts.get(name, 0) + 1
            self._counts[name] = number
            token = f"<{name}_{number}>"
            self._pseudonyms[(name, value)] = token
            self._values[token] = value
            return token

    def restore(self, text: str) -> str:
        """``text`` with every pseudonym of this vault replaced by its value (others are left as they are)."""
        if "<" not in text or not self._values:
            return text
        return _PSEUDONYM.sub(lambda m: self._values.get(m.group(), m.group()), text)

    def restore_json(self, obj: Any) -> Any:
        """A copy of ``obj`` (a tool call's arguments: dicts, lists, tuples, strings, numbers) with every
        string restored, keys included; anything else is returned as it is."""
        if isinstance(obj, str):
            return self.restore(obj)
        if isinstance(obj, dict):
            return {self.restore_json(k): self.restore_json(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.restore_json(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.restore_json(v) for v in obj)
        return obj

    @property
    def pseudonyms(self) -> list[str]:
        """The pseudonyms handed out so far (not their values)."""
        with self._lock:
            return list(self._values)

    def __contains__(self, pseudonym: object) -> bool:
        return pseudonym in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:  # an empty vault is still a vault (``vault or Vault()`` must keep it)
        return True

    def clear(self) -> None:
        """Forget every value (numbering starts again)."""
        with self._lock:
            self._pseudonyms.clear()
            self._values.clear()
            self._counts.clear()

    def __repr__(self) -> str:
        return f"<Vault: {len(self)} pseudonym(s)>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            "a stageguard Vault is never serialised: it holds the original values of pseudonyms and lives "
            "only in the run's memory (keep it out of checkpointed state)"
        )

    def __copy__(self) -> Vault:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Vault:
        return self


def apply_redaction(
    text: str,
    spans: Iterable[Span],
    *,
    strategy: RedactionStrategy = "placeholder",
    placeholder: str = "<{label}>",
    vault: Vault | None = None,
) -> tuple[str, dict[str, str]]:
    """``text`` with each span replaced per ``strategy``, and what replaced what (value -> replacement),
    so a caller can scrub the values from anything else it reports. ``pseudonym`` needs a ``vault``."""
    replaced: dict[str, str] = {}
    out: list[str] = []
    pos = 0
    for start, end, label in merge_spans(text, spans):
        value = text[start:end]
        if strategy == "placeholder":
            replacement = placeholder.replace("{label}", label.upper())
        elif strategy == "mask":
            replacement = mask(label, value)
        elif strategy == "hash":
            replacement = hash_token(label, value)
        elif strategy == "pseudonym":
            if vault is None:
                raise ValueError("the pseudonym strategy needs a Vault")
            replacement = vault.pseudonym(label, value)
        else:
            raise ValueError(f"unknown redaction strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        replaced[value] = replacement
        out += (text[pos:start], replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out), replaced


def scrub(text: str, replaced: dict[str, str]) -> str:
    """``text`` with every redacted value in ``replaced`` swapped for its replacement (longest first)."""
    for value in sorted(replaced, key=len, reverse=True):
        if value in text:
            text = text.replace(value, replaced[value])
    return text
