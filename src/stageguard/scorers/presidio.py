"""Optional PII backend on Microsoft Presidio, for apps that already run it (``stageguard[presidio]``).

Presidio's findings are mapped onto stageguard's PII categories, so rules written for the built-in
:class:`~stageguard.scorers.pii.PIIScorer` work unchanged. Pass your own ``AnalyzerEngine`` (with a spaCy
or transformers NLP engine, for names and places) as ``analyzer=``. Without one, the scorer builds an
engine with Presidio's regex/checksum recognisers only and a no-op NLP engine: no model download, so it
works offline, but it finds no names or addresses (Presidio finds those only with an NER model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from .base import ScoreResult, Span, TextScorer

# Presidio entity type -> stageguard PII category (anything else is dropped).
DEFAULT_ENTITY_MAP: dict[str, str] = {
    "PERSON": "name",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone_number",
    "CREDIT_CARD": "credit_card_info",
    "US_SSN": "ssn",
    "US_ITIN": "ssn",
    "IP_ADDRESS": "network_info",
    "URL": "network_info",
    "DOMAIN_NAME": "network_info",
    "MAC_ADDRESS": "network_info",
    "IBAN_CODE": "account_info",
    "US_BANK_NUMBER": "account_info",
    "STREET_ADDRESS": "address",
    "ADDRESS": "address",
}
_MISSING = (
    "PresidioPIIScorer needs presidio-analyzer, which is not installed: pip install 'stageguard[presidio]'"
)


def _require_presidio() -> Any:
    """Import ``presidio_analyzer`` on first use, with an error that names the extra to install."""
    try:
        import presidio_analyzer
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return presidio_analyzer


def regex_only_analyzer(language: str = "en") -> Any:
    """A Presidio ``AnalyzerEngine`` with its pattern recognisers and no NLP model (works offline).

    Presidio validates e-mail domains with ``tldextract``, which by default downloads the public suffix
    list on first use; this switches that library's default extractor to its bundled snapshot.
    """
    presidio = _require_presidio()
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    _offline_tldextract()
    engine = NoOpNlpEngine(models=[{"lang_code": language, "model_name": "none"}])
    return presidio.AnalyzerEngine(nlp_engine=engine, supported_languages=[language])


def _offline_tldextract() -> None:
    try:
        import tldextract
    except ImportError:  # pragma: no cover - presidio depends on it
        return
    module = tldextract.tldextract
    if getattr(module.TLD_EXTRACTOR, "suffix_list_urls", ()):
        module.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


class PresidioPIIScorer(TextScorer):
    """PII categories from a Presidio ``AnalyzerEngine`` (see the module docstring)."""

    name = "pii_presidio"
    mode = "thread"  # an NER-backed analyzer can take tens of milliseconds

    def __init__(
        self,
        field: Literal["input", "output"] = "input",
        *,
        analyzer: Any = None,
        language: str = "en",
        score_threshold: float = 0.35,
        entity_map: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(field)
        _require_presidio()
        self.analyzer = analyzer if analyzer is not None else regex_only_analyzer(language)
        self.language = language
        self.score_threshold = score_threshold
        self.entity_map = dict(entity_map if entity_map is not None else DEFAULT_ENTITY_MAP)

    def score_text(self, text: str) -> ScoreResult:
        if not text:
            return ScoreResult(value=[], spans=[], explanation="no PII found")
        results = self.analyzer.analyze(
            text=text,
            language=self.language,
            entities=sorted(self.entity_map),
            score_threshold=self.score_threshold,
        )
        spans = sorted(
            (
                Span(start=r.start, end=r.end, label=self.entity_map[r.entity_type], field=self.field)
                for r in results
                if r.entity_type in self.entity_map and r.end > r.start
            ),
            key=lambda s: (s.start, s.end),
        )
        emails = [s for s in spans if s.label == "email"]
        spans = [  # Presidio also reports the domain of an e-mail address as a URL
            s
            for s in spans
            if s.label == "email" or not any(e.start <= s.start and s.end <= e.end for e in emails)
        ]
        categories = sorted({s.label for s in spans})
        explanation = f"Presidio found: {', '.join(categories)}" if categories else "no PII found"
        return ScoreResult(value=categories, spans=spans, explanation=explanation)
