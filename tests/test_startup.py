"""Cold start (issue 17): what importing stageguard and running ``stageguard --help`` load, checked in a fresh
interpreter through ``sys.modules``; the public names still resolve lazily. Timings: benchmarks/startup.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import stageguard
import stageguard.scorers

# Never needed to import the package or print the CLI's help.
HEAVY = (
    "httpx",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "langchain_core",
    "llama_index",
    "rich",
    "numpy",
    "tokenizers",
    "phonenumbers",
    "pydantic",
    "asyncio",
    "stageguard.engine",
    "stageguard.protect",
    "stageguard.store",
    "stageguard.scorers.registry",
    "stageguard.scorers.pii",
    "stageguard.scorers.classifiers",
    "stageguard.scorers.rag",
    "stageguard.scorers.agent",
)


def _loaded_after(code: str) -> list[str]:
    """The HEAVY modules (and submodules) in ``sys.modules`` after running ``code`` in a fresh process."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        heavy = {HEAVY!r}
        loaded = [m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)]
        print(json.dumps(sorted(loaded)))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_import_stageguard_loads_none_of_the_heavy_modules() -> None:
    assert _loaded_after("import stageguard") == []


def test_cli_help_loads_neither_the_engine_nor_the_scorers() -> None:
    code = """
        import contextlib, io, sys
        from stageguard.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
            main(["--help"])
        assert "stageguard" in out.getvalue()
        for command in (["check", "--help"], ["stages", "create", "--help"], ["eval", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                main(command)
    """
    assert _loaded_after(code) == []


def test_a_metric_loads_only_its_own_scorer() -> None:
    """The registry imports a built-in scorer's module on the first use of its metric, not before."""
    loaded = _loaded_after(
        """
        import stageguard
        from stageguard.scorers.registry import default_registry
        default_registry.get("tool_error_rate")
        """
    )
    assert "stageguard.scorers.agent" in loaded
    assert not {"stageguard.scorers.pii", "stageguard.scorers.classifiers", "numpy"} & set(loaded)


def test_rag_metrics_load_numpy_only_for_semantic_support() -> None:
    """An answer found word for word in its context needs no embeddings (numpy stays unloaded); a
    paraphrase does, and ``ContextAdherenceScorer.load()`` (what warm_up calls) loads them up front."""
    found = """
        from stageguard import Payload
        from stageguard.scorers.rag import CompletenessScorer, ContextAdherenceScorer
        fact = "Paris is in France."
        payload = Payload(input="Where is Paris?", output=fact, context=[fact])
        assert ContextAdherenceScorer().score(payload).value == 1.0
        CompletenessScorer().score(payload)
    """
    assert "numpy" not in _loaded_after(found)
    paraphrase = """
        from stageguard import Payload
        from stageguard.scorers.rag import ContextAdherenceScorer
        answer, context = "Paris is the capital city of France.", ["Paris is the capital of France."]
        ContextAdherenceScorer().score(Payload(input="Tell me", output=answer, context=context))
    """
    assert "numpy" in _loaded_after(paraphrase)
    assert "numpy" in _loaded_after(
        "from stageguard.scorers.rag import ContextAdherenceScorer\nContextAdherenceScorer().load()"
    )


@pytest.mark.parametrize("module", [stageguard, stageguard.scorers])
def test_every_public_name_resolves_and_is_listed(module: object) -> None:
    names: list[str] = module.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(module, name) is not None, name
    assert set(names) <= set(dir(module))


def test_lazy_names_are_the_defining_modules_objects() -> None:
    from stageguard.protect import Protect
    from stageguard.scorers.registry import ScorerRegistry, default_registry
    from stageguard.store.sqlite import SQLiteStageStore

    assert stageguard.Protect is Protect
    assert stageguard.SQLiteStageStore is SQLiteStageStore
    assert stageguard.ScorerRegistry is ScorerRegistry is stageguard.scorers.ScorerRegistry
    assert stageguard.scorers.default_registry is default_registry


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Protector'"):
        stageguard.Protector  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        stageguard.scorers.nothing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from stageguard import Protector", {})


def test_star_import_gives_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from stageguard import *", namespace)
    assert set(stageguard.__all__) <= set(namespace)
    assert namespace["Protect"] is stageguard.Protect
    assert namespace["__version__"] == stageguard.__version__


def test_the_cli_names_the_server_extra_as_the_store_does() -> None:
    from stageguard.cli import _db
    from stageguard.store import _open

    assert _db.SERVER_EXTRA == _open.SERVER_EXTRA


def test_warm_up_loads_the_built_in_scorers_and_skips_custom_ones() -> None:
    from stageguard.scorers.base import FunctionScorer
    from stageguard.scorers.registry import BUILTIN_SCORERS, ScorerRegistry

    registry = ScorerRegistry()
    assert stageguard.warm_up(registry=registry) == list(BUILTIN_SCORERS)
    assert stageguard.warm_up(["Toxicity", "input_pii"], registry=registry) == [
        "output_toxicity",
        "input_pii",
    ]

    def broken(payload: object) -> float:
        raise RuntimeError("no model")

    registry.register("input_pii", FunctionScorer("input_pii", broken))
    registry.register("output_pii", FunctionScorer("output_pii", broken, blocking=True))
    # a failing scorer is logged and skipped; a non-inline one (here: a thread) is not touched
    assert stageguard.warm_up(["input_pii", "output_pii", "input_tone"], registry=registry) == ["input_tone"]


def test_warm_up_loads_everything_the_first_invokes_would() -> None:
    """Every model, word list and phonenumbers' metadata, so no request pays for loading them."""
    probe = textwrap.dedent(
        """
        import json, sys
        import stageguard
        stageguard.warm_up()
        from stageguard.scorers import _embedding, _pii_lexicon, classifiers
        lists = [getattr(_pii_lexicon, name)() for name in ("first_names", "surnames", "known_names",
                                                            "common_words", "places")]
        initials = [{line[:1] for text in w._texts for line in text.split("\\n")} - {""} for w in lists]
        print(json.dumps({
            "phonenumbers": "phonenumbers" in sys.modules,
            "word lists": [set(w._parts) == wanted for w, wanted in zip(lists, initials)],
            "embedding": _embedding.static_embedder.cache_info().currsize,
            "models": sorted(classifiers._MODELS),
        }))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "phonenumbers": True,
        "word lists": [True] * 5,
        "embedding": 1,
        "models": ["prompt_injection", "sexism", "tone", "toxicity"],
    }
