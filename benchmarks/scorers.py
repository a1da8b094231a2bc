"""Every built-in text scorer side by side: latency, load cost, memory and accuracy on the development data.

Run: python benchmarks/scorers.py [--json OUT.json]. Targets (2-core machine): p50 <= 1 ms per scorer on a
200-character text; all default scorers loaded in < 300 ms and < 100 MB. Accuracy comes from the held-out
PII development files (in-sample: tuned on them); the classifiers' decision quality, measured leaving one
source out, is benchmarks/quality.py.
The RAG and agent scorers have their own script: benchmarks/rag_agent.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _classifiers
import _pii


def _ms(entry: dict[str, float]) -> str:
    return f"{entry['p50_ms']:6.3f} / {entry['p99_ms']:6.3f}"


def _pii_row(name: str, entry: dict[str, Any]) -> list[str]:
    accuracy = entry.get("accuracy", {})
    any_pii = accuracy.get("any_pii", {})
    validated = ("credit_card_info", "email", "phone_number", "ssn", "network_info", "account_info")
    recalls = [accuracy.get("per_category", {}).get(c, {}).get("recall") for c in validated]
    recalls = [r for r in recalls if r is not None]
    summary = (
        f"any-PII F1 {any_pii.get('f1', 0):.3f}, min validated recall {min(recalls):.2f}, "
        f"precision {accuracy.get('category_precision_overall', 0):.3f} (dev, in-sample)"
        if any_pii and recalls
        else "no dev data"
    )
    return [
        name,
        _ms(entry["latency_200_chars"]),
        _ms(entry["latency_2k_chars"]),
        f"{entry['load_s'] * 1e3:.0f}",
        "-",
        summary,
    ]


def _classifier_row(name: str, entry: dict[str, Any]) -> list[str]:
    summary = "leave-one-source-out figures: benchmarks/quality.py"
    return [
        name,
        _ms(entry["latency_200_chars"]),
        _ms(entry["latency_2kb"]),
        f"{entry['load_ms']:.0f}",
        f"{entry['memory_mb']:.1f}",
        summary,
    ]


def main() -> None:
    pii = _pii.report()
    classifiers = _classifiers.report()
    rows = [_pii_row("pii (built-in)", pii["builtin"])]
    if isinstance(pii["presidio"], dict):
        rows.append(_pii_row("pii (Presidio, regex)", pii["presidio"]))
    rows += [_classifier_row(name, classifiers[name]) for name in _classifiers.SCORERS]
    tier = classifiers["minilm_tier"]
    for metric, entry in tier.items():
        if isinstance(entry, dict):
            rows.append(
                [
                    f"{metric} (minilm tier)",
                    _ms(entry["latency_200_chars"]),
                    _ms(entry["latency_2kb"]),
                    "-",
                    "-",
                    "",
                ]
            )
    headers = ["scorer", "p50/p99 ms 200 ch", "p50/p99 ms 2 KB", "load ms", "MB", "accuracy"]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    cold = classifiers["cold_start"]
    weights_mb = classifiers["weights_bytes"]["total"] / 1e6
    print(
        f"\ncold process: import {cold['import_ms']:.0f} ms; all four classifiers loaded and first-scored in "
        f"{cold['load_and_first_score_ms']:.0f} ms, +{cold['rss_delta_mb']:.0f} MB RSS; PII word lists "
        f"{pii['builtin']['load_s'] * 1e3:.0f} ms; shipped weights {weights_mb:.2f} MB (embedding table "
        f"and tokenizer load in {classifiers['embedding_table']['load_ms']:.0f} ms of that)"
    )
    if "--json" in sys.argv:
        out = Path(sys.argv[sys.argv.index("--json") + 1])
        out.write_text(json.dumps({"pii": pii, "classifiers": classifiers}, indent=2))
        print(f"full report: {out}")


if __name__ == "__main__":
    main()
