"""Rewrite a chat memory after a guard changed an answer, so later turns see what the user saw.

Chat engines and agents write the model's answer to memory before a guard can look at it. These helpers
replace it (or drop a blocked turn). ``Memory`` (the SQL-backed default) is rewritten through its store so
that archived messages and memory blocks stay as they are; other memories through ``get_all``/``set``.
"""

from __future__ import annotations

from collections.abc import Callable

from llama_index.core.async_utils import asyncio_run
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.memory import BaseMemory, Memory
from llama_index.core.storage.chat_store.base_db import MessageStatus

from ._convert import with_text

Edit = Callable[[list[ChatMessage]], list[ChatMessage] | None]


def replace_last_answer(text: str) -> Edit:
    """Replace the last assistant message (the answer the guard changed) with ``text``."""

    def edit(messages: list[ChatMessage]) -> list[ChatMessage] | None:
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == MessageRole.ASSISTANT:
                return [*messages[:i], with_text(messages[i], text), *messages[i + 1 :]]
        return None

    return edit


def replace_last_user(original: str, text: str) -> Edit:
    """Replace the text of the last user message (a redacted input)."""

    def edit(messages: list[ChatMessage]) -> list[ChatMessage] | None:
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            if message.role == MessageRole.USER:
                content = message.content or ""
                new = content.replace(original, text) if original and original in content else text
                return [*messages[:i], with_text(message, new), *messages[i + 1 :]]
        return None

    return edit


def drop_from_last_user() -> Edit:
    """Forget a blocked turn: the last user message and anything after it."""

    def edit(messages: list[ChatMessage]) -> list[ChatMessage] | None:
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].role == MessageRole.USER:
                return messages[:i]
        return None

    return edit


async def arewrite(memory: BaseMemory, edit: Edit) -> bool:
    """Apply ``edit`` to the memory's messages; ``False`` when there was nothing to edit."""
    if isinstance(memory, Memory):
        store, key = memory.sql_store, memory.session_id
        active = await store.get_messages(key, status=MessageStatus.ACTIVE)
        new = edit(active)
        if new is None:
            return False
        await store.delete_messages(key, status=MessageStatus.ACTIVE)
        if new:
            await store.add_messages(key, new, status=MessageStatus.ACTIVE)
        return True
    messages = await memory.aget_all()
    new = edit(messages)
    if new is None:
        return False
    await memory.aset(new)
    return True


def rewrite(memory: BaseMemory, edit: Edit) -> bool:
    """Sync :func:`arewrite`."""
    if isinstance(memory, Memory):
        return bool(asyncio_run(arewrite(memory, edit)))
    messages = memory.get_all()
    new = edit(messages)
    if new is None:
        return False
    memory.set(new)
    return True
