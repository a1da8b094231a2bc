"""GuardedFunctionTool: arguments checked before the tool runs, results after; Context tools keep working."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool, QueryEngineTool
from llama_index.core.workflow import Context

from stageguard import Payload, Protect, ScoreResult, Span
from stageguard.llama_index import GuardedFunctionTool

# LlamaIndex's workflow runtime inspects agents with inspect.getmembers, which trips pydantic deprecations.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:inspect")


class Spy:
    def __init__(self, result: str = "ok") -> None:
        self.calls: list[dict[str, Any]] = []
        self.result = result

    def search(self, query: str) -> str:
        """Search the web."""
        self.calls.append({"query": query})
        return self.result

    def send(self, to: str, body: str) -> str:
        """Send a message."""
        self.calls.append({"to": to, "body": body})
        return self.result


def test_blocked_arguments_never_run(protect: Protect, rules: Any) -> None:
    spy = Spy()
    tool = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.search), input_stage=rules.block("NO"), protect=protect
    )
    out = tool.call(query="find the secret")
    assert spy.calls == []
    # an error result by default, like LangChain's error ToolMessage
    assert (out.content, out.raw_output, out.is_error) == ("NO", "NO", True)
    succeeding = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.search),
        input_stage=rules.block("NO"),
        protect=protect,
        block_as_error=False,
    )
    assert not succeeding.call(query="secret").is_error


def test_single_string_argument_is_redacted(protect: Protect, rules: Any) -> None:
    spy = Spy()
    tool = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.search), input_stage=rules.mask(), protect=protect
    )
    assert tool.call(query="my secret plan").content == "ok"
    assert spy.calls == [{"query": "my <SECRET> plan"}]


def test_json_arguments_are_redacted(protect: Protect, rules: Any) -> None:
    spy = Spy()
    tool = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.send), input_stage=rules.mask(), protect=protect
    )
    tool.call(to="bob", body="the secret is 42")
    assert spy.calls == [{"to": "bob", "body": "the <SECRET> is 42"}]


def test_arguments_that_cannot_be_rebuilt_block(protect: Protect, metric: Any) -> None:
    def first_char(payload: Payload) -> ScoreResult:
        return ScoreResult(value=["x"], spans=[Span(start=0, end=1, label="x", field=payload.text_field)])

    metric("li_first", first_char, kind="categories")
    stage = [{"rules": [{"metric": "li_first", "operator": "not_empty"}], "action": {"type": "REDACT"}}]
    spy = Spy()
    tool = GuardedFunctionTool(FunctionTool.from_defaults(spy.send), input_stage=stage, protect=protect)
    out = tool.call(to="bob", body="hi")
    assert spy.calls == []
    assert "blocked" in (out.content or "")


def test_result_override_and_redaction(protect: Protect, rules: Any) -> None:
    spy = Spy("the secret code is 7")
    blocked = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.search), output_stage=rules.block("HIDDEN"), protect=protect
    )
    out = blocked.call(query="code")
    assert (out.content, out.raw_output) == ("HIDDEN", "HIDDEN")
    masked = GuardedFunctionTool(
        FunctionTool.from_defaults(spy.search), output_stage=rules.mask(), protect=protect
    )
    out = masked.call(query="code")
    assert out.content == "the <SECRET> code is 7" == out.raw_output


def test_payload_describes_the_call(protect: Protect, rules: Any, recorder: list[Payload]) -> None:
    """The core mapping (as in LangChain): arguments are ``output``, the result is ``input``."""
    tool = GuardedFunctionTool(FunctionTool.from_defaults(Spy("found").search), rules.record, protect=protect)
    tool.call(query="q")
    before, after = recorder
    assert before.output == "q" and before.input is None  # a bare tool knows no user request
    assert before.tools is not None and before.tools[0].name == "search"
    assert before.tool_calls is not None and before.tool_calls[0].arguments == {"query": "q"}
    assert before.tool_calls[0].status is None  # pending
    assert after.input == "found" and after.output is None
    assert after.tool_calls is not None and len(after.tool_calls) == 1
    assert (after.tool_calls[0].result, after.tool_calls[0].status) == ("found", "success")


async def test_async_call(protect: Protect, rules: Any) -> None:
    async def lookup(query: str) -> str:
        """Look something up."""
        return f"about {query}"

    tool = GuardedFunctionTool(
        FunctionTool.from_defaults(async_fn=lookup), input_stage=rules.block("NO"), protect=protect
    )
    assert (await tool.acall(query="secret")).content == "NO"
    assert (await tool.acall(query="cats")).content == "about cats"


def test_wraps_non_function_tools(protect: Protect, rules: Any, index: Any, echo_llm: Any) -> None:
    qe_tool = QueryEngineTool.from_defaults(
        index.as_query_engine(llm=echo_llm), name="docs", description="Answer from the documents."
    )
    tool = GuardedFunctionTool(qe_tool, input_stage=rules.block("NO"), protect=protect)
    assert tool.metadata.name == "docs"
    assert tool.call(input="secret").content == "NO"
    answer = tool.call(input="towers")
    assert "towers" in (answer.content or "")  # the echo model saw the query


async def test_context_tools_work_in_an_agent(
    protect: Protect, rules: Any, scripted: Any, tool_call: Any
) -> None:
    from llama_index.core.agent.workflow import FunctionAgent

    async def remember(ctx: Context, fact: str) -> str:
        """Remember a fact in the run's state."""
        await ctx.store.set("fact", fact)
        return f"remembered {fact}"

    remember.__annotations__["ctx"] = Context  # postponed annotations here; LlamaIndex compares types

    guarded = GuardedFunctionTool(
        FunctionTool.from_defaults(async_fn=remember), output_stage=rules.mask(), protect=protect
    )
    assert guarded.requires_context and guarded.ctx_param_name == "ctx"

    def answer(messages: list[ChatMessage]) -> ChatMessage:
        if messages[-1].role.value == "tool":
            return ChatMessage(role="assistant", content=f"done: {messages[-1].content}")
        return tool_call("remember", fact="a secret fact")

    agent = FunctionAgent(llm=scripted(answer), tools=[guarded], streaming=False)
    ctx = Context(agent)
    result = await agent.run(user_msg="remember this", ctx=ctx)
    assert await ctx.store.get("fact") == "a secret fact"  # the tool got its Context
    assert str(result) == "done: remembered a <SECRET> fact"  # the model saw the redacted result
