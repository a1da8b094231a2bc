"""``GalileoMetrics``: the galileo SDK's metric enum, with the same member names and values.

Code that builds rules with ``GalileoMetrics.input_toxicity`` keeps working after its imports change to
stageguard: a member is accepted wherever a metric name is (``Rule(metric=...)``, ``get_metric``), since
its value is one of Galileo's spellings, which stageguard normalises (``"Input Toxicity (SLM)"`` is
``input_toxicity``). Members whose metric stageguard has no scorer for (``supported`` is false, e.g.
``correctness``) exist so imports and comparisons work; a rule naming one is an unknown-metric error
unless a custom metric of that name is registered.
"""

from __future__ import annotations

from enum import Enum

from .metrics import find_metric, normalize_metric_name


class GalileoMetrics(str, Enum):
    """Built-in Galileo metric scorers (``galileo.GalileoMetrics`` in galileo 2.7 / galileo-core 4.5).

    Values are Galileo's UI labels; ``_luna`` members are Galileo's small-model versions, which map to the
    same stageguard metric as their base member.
    """

    action_advancement = "Action Advancement"
    action_advancement_luna = "Action Advancement (SLM)"
    action_completion = "Action Completion"
    action_completion_luna = "Action Completion (SLM)"
    agent_efficiency = "Agent Efficiency"
    agent_flow = "Agent Flow"
    chunk_attribution_utilization = "Chunk Attribution Utilization"
    chunk_attribution_utilization_luna = "Chunk Attribution Utilization (SLM)"
    chunk_relevance = "Chunk Relevance"
    completeness = "Completeness"
    completeness_luna = "Completeness (SLM)"
    context_adherence = "Context Adherence"
    context_adherence_luna = "Context Adherence (SLM)"
    context_precision = "Context Precision"
    context_relevance = "Context Relevance"
    context_relevance_luna = "Context Relevance (SLM)"
    conversation_quality = "Conversation Quality"
    correctness = "Correctness"
    ground_truth_adherence = "Ground Truth Adherence"
    input_pii = "Input PII"
    input_pii_luna = "Input PII (SLM)"
    input_sexism = "Input Sexism"
    input_sexism_luna = "Input Sexism (SLM)"
    input_tone = "Input Tone"
    input_tone_luna = "Input Tone (SLM)"
    input_toxicity = "Input Toxicity"
    input_toxicity_luna = "Input Toxicity (SLM)"
    instruction_adherence = "Instruction Adherence"
    output_pii = "Output PII"
    output_pii_luna = "Output PII (SLM)"
    output_sexism = "Output Sexism"
    output_sexism_luna = "Output Sexism (SLM)"
    output_tone = "Output Tone"
    output_tone_luna = "Output Tone (SLM)"
    output_toxicity = "Output Toxicity"
    output_toxicity_luna = "Output Toxicity (SLM)"
    precision_at_k = "Precision@K"
    prompt_injection = "Prompt Injection"
    prompt_injection_luna = "Prompt Injection (SLM)"
    reasoning_coherence = "Reasoning Coherence"
    sql_adherence = "SQL Adherence"
    sql_correctness = "SQL Correctness"
    sql_efficiency = "SQL Efficiency"
    sql_injection = "SQL Injection"
    tool_error_rate = "Tool Error Rate"
    tool_error_rate_luna = "Tool Error Rate (SLM)"
    tool_selection_quality = "Tool Selection Quality"
    tool_selection_quality_luna = "Tool Selection Quality (SLM)"
    user_intent_change = "User Intent Change"

    @property
    def canonical(self) -> str:
        """stageguard's name for this metric (``GalileoMetrics.input_pii_luna.canonical == "input_pii"``)."""
        return normalize_metric_name(self.value)

    @property
    def supported(self) -> bool:
        """Whether a rule can use this metric here (a built-in, or a registered custom metric)."""
        return find_metric(self.value) is not None


__all__ = ["GalileoMetrics"]
