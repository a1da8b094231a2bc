"""``GuardedFunctionTool``: a tool whose arguments are checked before it runs and its result after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.tools import BaseTool, FunctionTool, ToolOutput, adapt_to_async_tool

from ..checkpoints import Turn, arguments_from_text, tool_call_payload, tool_result_payload
from ..payload import Payload, ToolCall
from ..protect import Protect
from ..redaction import Vault
from ..response import Response
from ..stage_ref import RulesetsLike, StageLike
from ..status import FailPolicy
from ._convert import output_call, tool_spec
from ._guard import Guard, changed, is_override


@dataclass(frozen=True)
class AgentCall:
    """What a guarded agent knows of the call its tool is about to run (a bare tool knows none of it)."""

    request: str | None = None  # the user's message that started the run
    calls: tuple[ToolCall, ...] = ()  # the run's calls that ran, with their results and errors
    call_id: str | None = None  # the model's id for this call
    vault: Vault | None = field(default=None, repr=False)  # the run's pseudonyms (in memory only)


_AGENT_CALL: ContextVar[AgentCall | None] = ContextVar("stageguard_agent_call", default=None)
_NO_RUN = AgentCall()


@contextmanager
def agent_call(call: AgentCall) -> Iterator[None]:
    """Tell a :class:`GuardedFunctionTool` called inside this block which agent call it runs."""
    token = _AGENT_CALL.set(call)
    try:
        yield
    finally:
        _AGENT_CALL.reset(token)


class GuardedFunctionTool(FunctionTool):
    """Wraps a tool: the ``input`` hook checks its arguments, the ``output`` hook its result.

    Payloads follow :mod:`stageguard.checkpoints`: the arguments are the ``output`` of the ``input`` hook
    (with the user's request as ``input`` when a guarded agent runs the tool), the result is the ``input``
    of the ``output`` hook; ``tool_calls`` holds the run's earlier calls and this one, with the model's id.

    In a guarded agent's run the checks use the run's :class:`~stageguard.redaction.Vault`: the arguments
    are checked as the model wrote them (pseudonyms), the tool then runs on the values behind them, and
    its result is checked with the same vault (so a ``pseudonym`` REDACT gives a value the pseudonym it
    already has). The returned ``raw_input`` holds the arguments as the model wrote them.

    A blocked call never runs: the tool answers with the override as an error result (``is_error=True``,
    like LangChain's error ``ToolMessage``; ``block_as_error=False`` makes it a success). A redaction of the
    arguments runs the tool on the redacted arguments (a single string argument is checked as is, several
    as JSON; if the redacted JSON no longer parses, the call is blocked). A changed result
    replaces the content *and* ``raw_output``, so the original never reaches the model or a
    ``return_direct`` answer. Tools that take a workflow ``Context`` keep working: the signature (and so
    ``requires_context``) is the inner tool's. ``tool.fn`` and ``tool.async_fn`` are the *unguarded*
    functions; agents call ``call``/``acall``.
    """

    def __init__(
        self,
        tool: BaseTool,
        stage: StageLike | None = None,
        *,
        input_stage: StageLike | None = None,
        output_stage: StageLike | None = None,
        prioritized_rulesets: RulesetsLike | None = None,
        stage_version: int | None = None,
        project_name: str | None = None,
        project_id: str | None = None,
        protect: Protect | None = None,
        timeout: float = 300.0,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        metadata: dict[str, Any] | None = None,
        block_as_error: bool = True,
    ) -> None:
        self._inner = tool
        self._ainner = adapt_to_async_tool(tool)
        if isinstance(tool, FunctionTool):
            super().__init__(fn=tool.real_fn, metadata=tool.metadata)
            # The agent passes its Context when these say so: keep the inner tool's view of its signature.
            self.requires_context = tool.requires_context
            self.ctx_param_name = tool.ctx_param_name
        else:
            super().__init__(fn=_unsupported, metadata=tool.metadata)
        self._guard = Guard.build(
            f"tool:{tool.metadata.get_name()}",
            ("input", "output"),
            stage,
            {"input": input_stage, "output": output_stage},
            prioritized_rulesets=prioritized_rulesets,
            stage_version=stage_version,
            project_name=project_name,
            project_id=project_id,
            protect=protect,
            timeout=timeout,
            fail_policy=fail_policy,
            shadow=shadow,
            metadata=metadata,
        )
        self.block_as_error = block_as_error

    @property
    def inner(self) -> BaseTool:
        return self._inner

    @property
    def guard(self) -> Guard:
        return self._guard

    # -- payloads and results

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments the model chose (the workflow Context is not one of them)."""
        arguments = {k: v for k, v in kwargs.items() if k != self.ctx_param_name}
        if args:
            arguments["args"] = list(args)
        return arguments

    def _turn(self) -> tuple[Turn, AgentCall]:
        """The turn this call belongs to, and what the guarded agent running it knows (if any)."""
        run = _AGENT_CALL.get() or _NO_RUN
        fields = self._guard.fields_read("input", "output")
        tools = (tool_spec(self.metadata),) if "tools" in fields else ()
        return Turn(tools=tools, calls=run.calls if "tool_calls" in fields else ()), run

    def _input_payload(self, arguments: dict[str, Any], turn: Turn, run: AgentCall) -> Payload | None:
        call = ToolCall(name=self.metadata.get_name(), arguments=arguments, id=run.call_id)
        return tool_call_payload(call, turn, request=run.request)

    def _output_payload(
        self, arguments: dict[str, Any], output: ToolOutput, turn: Turn, run: AgentCall
    ) -> Payload | None:
        return tool_result_payload(
            output_call(self.metadata.get_name(), arguments, output, run.call_id), turn
        )

    def _blocked(self, text: str, arguments: dict[str, Any]) -> ToolOutput:
        return ToolOutput(
            content=text,
            tool_name=self.metadata.get_name(),
            raw_input={"args": (), "kwargs": arguments},
            raw_output=text,
            is_error=self.block_as_error,
        )

    def _before(
        self,
        decision: Response | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        arguments: dict[str, Any],
    ) -> ToolOutput | dict[str, Any]:
        """The blocked answer, or the keyword arguments to run the tool with."""
        if not changed(decision):
            return kwargs
        if is_override(decision):
            return self._blocked(decision.text, arguments)
        rebuilt = None if args else arguments_from_text(arguments, decision.text)
        if rebuilt is None:
            return self._blocked(_UNREDACTABLE, arguments)
        return {**kwargs, **rebuilt}

    @staticmethod
    def _after(output: ToolOutput, decision: Response | None) -> ToolOutput:
        if not changed(decision):
            return output
        return ToolOutput(
            content=decision.text,
            tool_name=output.tool_name,
            raw_input=output.raw_input,
            raw_output=decision.text,
            is_error=output.is_error,
        )

    # -- calls

    @staticmethod
    def _restored(vault: Vault | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments the tool runs with: the values behind the run's pseudonyms."""
        return vault.restore_json(kwargs) if vault is not None and len(vault) else kwargs

    @staticmethod
    def _as_written(output: ToolOutput, arguments: dict[str, Any], restored: bool) -> ToolOutput:
        """The result, its ``raw_input`` the arguments as the model wrote them (no restored value is kept
        in the agent's state, which may be serialised)."""
        if not restored:
            return output
        return output.model_copy(update={"raw_input": {"args": (), "kwargs": arguments}})

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        turn, run = self._turn()  # one for both checks: the call's surroundings don't change in between
        vault = run.vault
        arguments = self._arguments(args, kwargs)
        decision = self._guard.check("input", self._input_payload(arguments, turn, run), vault=vault)
        ready = self._before(decision, args, kwargs, arguments)
        if isinstance(ready, ToolOutput):
            return ready
        run_with = self._restored(vault, ready)  # restored after the check, right before the tool runs
        output = self._inner(*args, **run_with)
        written = self._arguments(args, ready)
        after = self._guard.check("output", self._output_payload(written, output, turn, run), vault=vault)
        return self._as_written(self._after(output, after), written, run_with is not ready)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        turn, run = self._turn()
        vault = run.vault
        arguments = self._arguments(args, kwargs)
        decision = await self._guard.acheck("input", self._input_payload(arguments, turn, run), vault=vault)
        ready = self._before(decision, args, kwargs, arguments)
        if isinstance(ready, ToolOutput):
            return ready
        run_with = self._restored(vault, ready)
        output = await self._ainner.acall(*args, **run_with)
        written = self._arguments(args, ready)
        payload = self._output_payload(written, output, turn, run)
        after = await self._guard.acheck("output", payload, vault=vault)
        return self._as_written(self._after(output, after), written, run_with is not ready)


_UNREDACTABLE = "This tool call was blocked: its arguments had to be redacted and could not be rebuilt."


def _unsupported(**kwargs: Any) -> Any:
    raise NotImplementedError("GuardedFunctionTool runs its inner tool through call/acall")
