"""Pydantic on the hot paths: models built without validation (for values already known to be valid),
and private attributes read without pydantic's slow path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
# BaseModel's slots, set directly (as object.__setattr__ would, a little faster)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_get_private = BaseModel.__dict__["__pydantic_private__"].__get__


def builder(cls: type[M], fields_set: Iterable[str] | None = None) -> Callable[..., M]:
    """A function ``build(values, private=None)`` building what ``cls.model_construct(**values)`` builds,
    for ``values`` naming every field of ``cls`` (in field order) with trusted, already valid values,
    without pydantic's per-field loop: the engine builds a dozen result objects per invoke.
    ``fields_set`` (default: every field) is the models' ``model_fields_set``, as if only those had been
    given; ``private`` holds every private attribute of a model that has some. ``values`` becomes the
    model's ``__dict__``."""
    given = set(cls.model_fields if fields_set is None else fields_set)
    allow_extra = cls.model_config.get("extra") == "allow"
    new = cls.__new__

    def build(values: dict[str, Any], private: dict[str, Any] | None = None) -> M:
        model = new(cls)
        _set_dict(model, values)
        _set_fields_set(model, given.copy())
        _set_extra(model, {} if allow_extra else None)
        _set_private(model, private)
        return model

    return build


class FastPrivateAttributes:
    """Mixin for pydantic models whose private attributes are read on hot paths (put it first among the
    bases): ``self._name`` then comes straight from ``__pydantic_private__``. Pydantic's own
    ``__getattr__`` first asks whether the attribute is a descriptor, which raises and catches an
    AttributeError: ~1.9 µs a read, several per guard check; through this, ~0.55 µs (the failed normal
    lookup is most of it). The invoke's own path reads ``__pydantic_private__`` directly (0.09 µs, see
    ``stageguard.protect._private``). (Private attributes that are descriptors, what pydantic's question
    is for, are not used here.)"""

    __slots__ = ()

    if not TYPE_CHECKING:  # as pydantic's own (mypy would allow any attribute otherwise)

        def __getattr__(self, name: str) -> Any:
            try:
                private = _get_private(self)
            except AttributeError:  # not set yet (a model being copied or unpickled): no recursion here
                private = None
            if private is not None and name in private:
                return private[name]
            return super().__getattr__(name)
