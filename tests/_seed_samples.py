"""The code samples of the seed documents (Galileo's "Rules" and "Stages" pages), copied verbatim.

They are literals so the conformance tests run without the documents; ``test_samples_are_the_seeds``
checks they still match ``../shared/seeds/*.md`` when that directory is there. Samples run unchanged
through the galileo SDK (``tests/server/test_server_seed_conformance.py``) and with only their imports
changed (:func:`swap_imports`) on stageguard's own API (``tests/test_seed_conformance.py``).
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any


def _rule_sample(member: str, operator: str, target: str) -> str:
    return f"""from galileo import GalileoMetrics
from galileo_core.schemas.protect.rule import Rule, RuleOperator

rule = Rule(
    metric=GalileoMetrics.{member},
    operator=RuleOperator.{operator},
    target_value={target}
)
"""


# (seed document, section) -> code; in the order the documents give them.
RULE_SAMPLES: dict[str, str] = {
    "create-rules": _rule_sample("input_toxicity", "gt", "0.10"),
    "action-advancement": _rule_sample("action_advancement", "lt", "0.90"),
    "action-completion": _rule_sample("action_completion", "lt", "0.90"),
    "completeness": _rule_sample("completeness", "lt", "0.90"),
    "context-adherence": _rule_sample("context_adherence", "lt", "0.10"),
    "pii": _rule_sample("output_pii", "any", '["ssn", "address"]'),
    "prompt-injection": _rule_sample("prompt_injection", "gte", "0.5"),
    "sexism": _rule_sample("input_sexism", "gt", "0.95"),
    "tone": _rule_sample("input_tone", "neq", '"neutral"'),
    "tool-errors": _rule_sample("tool_error_rate", "lt", "0.90"),
    "tool-selection-quality": _rule_sample("tool_selection_quality", "lt", "0.90"),
    "toxicity": _rule_sample("input_toxicity", "gt", "0.10"),
    "custom-code-based-metrics": """from galileo_core.schemas.protect.rule import Rule, RuleOperator

rule = Rule(
    metric="your-metric-name",
    operator=RuleOperator.gt,
    target_value=0.95
)
""",
}

STAGE_SAMPLES: dict[str, str] = {
    "create-central": """from galileo import GalileoMetrics
from galileo.stages import create_protect_stage

from galileo_core.schemas.protect.rule import Rule, RuleOperator
from galileo_core.schemas.protect.ruleset import Ruleset
from galileo_core.schemas.protect.stage import StageType

# Create a rule
rule = Rule(
    metric=GalileoMetrics.input_toxicity,
    operator=RuleOperator.gt,
    target_value=0.1
)

# Add this rule to a ruleset, using the default passthrough action
ruleset = Ruleset(rules=[rule])

# Create a stage
stage = create_protect_stage(
    name="My stage",
    stage_type=StageType.central,
    prioritized_rulesets=[ruleset],
    description="Test the input for toxicity."
)
""",
    "create-local": """from galileo.stages import create_protect_stage

from galileo_core.schemas.protect.stage import StageType

# Create a stage
stage = create_protect_stage(
    name="My stage",
    stage_type=StageType.local,
    description="A local stage with rules set when it is used"
)
""",
    "get": """from galileo.stages import get_protect_stage

stage = get_protect_stage(stage_name="My stage")
""",
    "update": """from galileo import GalileoMetrics
from galileo.stages import update_protect_stage

from galileo_core.schemas.protect.rule import Rule, RuleOperator
from galileo_core.schemas.protect.ruleset import Ruleset
from galileo_core.schemas.protect.stage import StageType

# Create a rule
rule = Rule(
    metric=GalileoMetrics.input_toxicity,
    operator=RuleOperator.gt,
    target_value=0.1
)

# Create a ruleset
ruleset = Ruleset(rules=[rule])

# update the stage
stage = update_protect_stage(
    stage_name="My stage",
    prioritized_rulesets=[ruleset],
)
""",
    "pause": """from galileo.stages import pause_protect_stage

# Pause a stage
pause_protect_stage(stage_name="My stage")
""",
    "resume": """from galileo.stages import resume_protect_stage

# Resume the stage
resume_protect_stage(stage_name="My stage")
""",
}

SEED_FILES = {"rules": RULE_SAMPLES, "stages": STAGE_SAMPLES}

_IMPORT = re.compile(r"^from (?:galileo|galileo_core)(?:\.[\w.]+)? import ", re.MULTILINE)


def swap_imports(code: str) -> str:
    """The sample with its ``galileo``/``galileo_core`` imports taken from ``stageguard`` instead."""
    return _IMPORT.sub("from stageguard import ", code)


def run_sample(code: str, name: str, *, swap: bool) -> dict[str, Any]:
    """Execute a sample (imports swapped, or unchanged) and return its variables."""
    namespace: dict[str, Any] = {"__name__": f"seed_sample_{name}"}
    exec(compile(swap_imports(code) if swap else code, f"<seed sample {name}>", "exec"), namespace)
    return namespace


def seeds_dir() -> Path:
    """``$STAGEGUARD_SEEDS_DIR``, else ``../shared/seeds`` beside the repository (may not exist)."""
    given = os.environ.get("STAGEGUARD_SEEDS_DIR")
    return Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "seeds"


_BLOCK = re.compile(r"^[ \t]*```python[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def seed_blocks(path: Path) -> list[str]:
    """The Python code blocks of one seed document, dedented, in order."""
    return [textwrap.dedent(block).strip() + "\n" for block in _BLOCK.findall(path.read_text())]
