"""What building only the payload fields a stage reads saves (``Protect.fields_read``, issue 17).

A ``create_agent`` agent with ``ProtectMiddleware`` (input and output stages of built-in text metrics:
``prompt_injection`` and ``output_toxicity``) answers after a conversation of ``--history`` earlier
messages, with a fake chat model. The stages read only ``input`` and ``output``, so the middleware no
longer converts the conversation, the tool specs and the tool calls into the payload. CPU time per run,
median of ``--runs`` runs; compare with the code before (``PYTHONPATH=<old>/src``) in the same hour:

    python benchmarks/payload_fields.py [--history 40] [--runs 300]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from stageguard import Protect, SQLiteStageStore
from stageguard.langchain import ProtectMiddleware


class FakeChat(GenericFakeChatModel):
    """A fake chat model that accepts tools (as agents bind them)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChat:  # type: ignore[override]
        return self


@tool
def lookup(order: str) -> str:
    """Look an order up."""
    return f"Order {order} shipped on Monday."


def history(n: int) -> list[Any]:
    """``n`` earlier messages: user turns, tool calls with results, answers."""
    out: list[Any] = []
    for i in range(n // 4 + 1):
        out += [
            HumanMessage(f"Where is my order {i}? I ordered it last week and it has not arrived yet."),
            AIMessage("", tool_calls=[{"name": "lookup", "args": {"order": str(i)}, "id": f"c{i}"}]),
            ToolMessage(f"Order {i} shipped on Monday.", tool_call_id=f"c{i}", name="lookup"),
            AIMessage(f"Your order {i} shipped on Monday and should arrive within three days."),
        ]
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=40)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    protect = Protect(SQLiteStageStore(":memory:"))

    def stage(metric: str) -> list[dict[str, Any]]:
        return [{"rules": [{"metric": metric, "operator": "gt", "target_value": 0.99}]}]

    middleware = ProtectMiddleware(
        input_stage=stage("prompt_injection"), output_stage=stage("output_toxicity"), protect=protect
    )
    earlier = history(args.history)
    request = HumanMessage("And where is my newest order?")

    model = FakeChat(messages=itertools.cycle([AIMessage("It shipped today.")]))
    agent = create_agent(model, [lookup], middleware=[middleware])

    def run() -> None:
        agent.invoke({"messages": [*earlier, request]})

    for _ in range(20):  # warm up: scorer models, caches
        run()
    times = []
    for _ in range(args.runs):
        start = time.thread_time()
        run()
        times.append(time.thread_time() - start)
    print(
        f"agent run with {args.history} earlier messages, input + output check: "
        f"median {statistics.median(times) * 1e3:.2f} ms CPU over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
