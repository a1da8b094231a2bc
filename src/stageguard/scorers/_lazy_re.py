"""Regular expressions compiled the first time a text needs them, not when their module is imported.

Compiling is most of what importing a scorer costs (``re`` parses patterns in Python), and many patterns
are only reached by some texts: the cue words looked for before a digit run, the tool-error and schema
format patterns of the agent metrics, the tag layouts of a RAG prompt. Those are :class:`LazyPattern` s,
so a first invoke compiles only what its texts reach (issue 17). The matches are those of the same
pattern compiled up front: the pattern and flags are passed to :func:`re.compile` unchanged.
:func:`compile_all` compiles every one of them now, for ``warm_up()`` (a server's first requests then
compile nothing).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator


class LazyPattern:
    """``re.compile(pattern, flags)`` on first use, with the methods of :class:`re.Pattern` the scorers
    call. Thread-safe: two threads may both compile it, to equal patterns, and either one is kept."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None
        _MADE.append(self)

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def compile(self) -> re.Pattern[str]:
        """The compiled pattern (compiled now if no text needed it yet)."""
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self.pattern, self.flags)
        return compiled

    def search(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        return self.compile().search(string, pos, endpos)

    def match(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[str] | None:
        return self.compile().match(string, pos, endpos)

    def finditer(self, string: str, pos: int = 0, endpos: int = sys.maxsize) -> Iterator[re.Match[str]]:
        return self.compile().finditer(string, pos, endpos)

    def sub(self, repl: str | Callable[[re.Match[str]], str], string: str, count: int = 0) -> str:
        return self.compile().sub(repl, string, count)

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r}, {self.flags!r})"


_MADE: list[LazyPattern] = []  # every pattern of the scorer modules imported so far


def compile_all() -> None:
    """Compile every :class:`LazyPattern` of the scorer modules imported so far."""
    for pattern in _MADE:
        pattern.compile()
