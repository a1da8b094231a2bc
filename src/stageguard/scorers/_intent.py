"""What a prompt injection *does*, as a few yes/no features for the prompt-injection scorer.

Trigger words alone don't separate attacks from ordinary prompts ("ignore the typos", "kill a Python
process", "you are a travel guide"). An injection addresses the assistant's own instructions, rules or
configuration and asks to ignore, replace or reveal them, or to drop its limits. Each pattern below needs
both halves: the act (ignore / reveal / switch off) and its object (the previous instructions, the system
prompt, the restrictions). Their weights in the final score are learned with the n-gram and embedding
margins on out-of-fold predictions (``scripts/train_classifiers.py``).

The patterns run on the lower-cased canonical view (see :func:`._textnorm.canonical_words`), use bounded
gaps only (linear time), and are English plus the German/French/Spanish override forms seen in attacks.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

_GAP = r"(?:\W+\w+){0,4}?\W+"  # up to four words in between

_PRIOR = (
    r"(?:previous|prior|above|earlier|preceding|initial|original|all|any|every|your|system|the|these|"
    r"those|current|old)"
)
_RULES = (
    r"(?:instructions?|rules?|prompts?|directives?|guidelines?|programming|restrictions?|constraints?|"
    r"polic(?:y|ies)|filters?|guardrails?|training|commands?|orders?|context|messages? above|text above)"
)
_OVERRIDE_ACT = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|skip|drop|abandon|discard|erase|delete|neglect|"
    r"stop following|do not follow|don't follow|no longer follow|set aside|throw out)"
)
_FORGET_ALL = (
    r"(?:forget|ignore|disregard)\W+(?:about\W+)?(?:everything|all|anything|alles|todo|tout)(?:\W+\w+){0,3}?\W+"
    r"(?:before|above|previously|earlier|prior|said|told|so far|up to now|until now|"
    r"davor|zuvor|vorher|antes|avant)"
)
_REVEAL_ACT = (
    r"(?:reveal|show|print|output|repeat|display|leak|disclose|share|tell me|give me|"
    r"what (?:is|are|was|were))"
)
_SECRET = (
    r"(?:(?:starting|initial|original|first|hidden|secret|system|internal) "
    r"(?:instructions|prompt|rules|message)|system prompt|initial prompt|original prompt|hidden prompt|"
    r"(?:your|the) (?:instructions|prompt|rules|configuration|guidelines)|"
    r"secret (?:key|password|word|code)|password|api key|confidential)"
)
_NO_LIMITS = (
    r"(?:(?:no|without|free (?:of|from)|not bound by|ignore|beyond|unrestricted by|not restricted by|zero)"
    r"(?:\W+\w+){0,2}?\W+(?:restrictions?|limits?|limitations?|filters?|rules|guidelines|censorship|ethics|"
    r"morals?|policies|boundaries|safeguards)|unrestricted|uncensored|unfiltered|jailbr(?:oken|eak)|"
    r"developer mode|do anything now|\bdan\b)"
)
_ROLE_RESET = (
    r"(?:from now on,? you (?:are|will|must|shall)|you are no longer|you are now (?:a|an|in|my)|"
    r"new instructions?:|your new (?:task|role|instructions|goal|purpose) (?:is|are)|"
    r"(?:enter|switch to|activate|enable) \w+ mode|act as if you (?:have|had) no)"
)
_FOREIGN_OVERRIDE = (
    r"vergiss alles|olvid(?:a|ar|e) todo|oublie[sz]? tout|"
    r"(?:ignoriere|vergiss)\W+(?:\w+\W+){0,3}?(?:anweisungen|vorherigen|alles)|"
    r"ignore[sz]?\W+(?:\w+\W+){0,3}?(?:instructions pr[eé]c[eé]dentes|consignes)|"
    r"ignora\W+(?:\w+\W+){0,3}?(?:instrucciones|anteriores)"
)

INTENTS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        rf"\b(?:{_OVERRIDE_ACT}{_GAP}{_PRIOR}{_GAP}{_RULES}|{_OVERRIDE_ACT}\W+{_RULES}|{_FORGET_ALL}|{_FOREIGN_OVERRIDE})\b"
    ),
    "reveal": re.compile(rf"\b{_REVEAL_ACT}{_GAP}{_SECRET}\b"),
    "no_limits": re.compile(rf"\b{_NO_LIMITS}"),
    "role_reset": re.compile(rf"\b{_ROLE_RESET}"),
}
NAMES = tuple(INTENTS)


def intent_features(views: list[str]) -> NDArray[np.float32]:
    """1.0 for each intent found in any of the (lower-cased) views, else 0.0; order: :data:`NAMES`."""
    return np.array(
        [1.0 if any(p.search(v) for v in views) else 0.0 for p in INTENTS.values()], dtype=np.float32
    )


def found(features: NDArray[np.float32]) -> list[str]:
    """The names of the intents present (for explanations)."""
    return [name for name, value in zip(NAMES, features, strict=True) if value > 0]
