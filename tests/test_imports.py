"""What importing a module pulls in, checked in a fresh interpreter: the core stays free of the HTTP
client, and an adapter without its extra says how to install it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import stageguard


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_the_core_does_not_import_the_http_client() -> None:
    result = _run(
        """
        import sys
        import stageguard.protect
        import stageguard

        stageguard.Protect(stageguard.SQLiteStageStore(":memory:")).close()
        print(sorted(m for m in sys.modules if m.startswith(("stageguard.client", "stageguard.server"))))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_core_never_imports_the_client_even_lazily() -> None:
    """Not even inside a function: choosing a remote store is the functional API's (``api.py``) job."""
    tree = ast.parse((Path(stageguard.__file__).parent / "protect.py").read_text(encoding="utf-8"))
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not [m for m in imported if m.split(".")[0] in ("client", "server", "httpx")], imported


def test_the_functional_api_chooses_the_remote_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """``STAGEGUARD_URL`` set: the functional API's factory (not the core) builds the remote store."""
    from stageguard.api import protect_from_env
    from stageguard.client.remote_store import RemoteStageStore

    monkeypatch.setenv("STAGEGUARD_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("STAGEGUARD_API_KEY", "sg_test")
    protect = protect_from_env()
    try:
        assert isinstance(protect.store, RemoteStageStore)
    finally:
        protect.close()


# A meta-path finder that makes the given top-level packages look not installed.
_BLOCK = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
try:
    import MODULE
except ImportError as exc:
    print(exc)
else:
    print("imported")
"""


@pytest.mark.parametrize(
    ("module", "blocked", "hint"),
    [
        ("stageguard.langchain", {"langchain_core"}, 'pip install "stageguard[langchain]"'),
        ("stageguard.langchain", {"langgraph"}, 'pip install "stageguard[langchain]"'),
        ("stageguard.llama_index", {"llama_index"}, 'pip install "stageguard[llama-index]"'),
    ],
)
def test_an_adapter_without_its_extra_says_how_to_install_it(
    module: str, blocked: set[str], hint: str
) -> None:
    result = _run(f"BLOCKED = {blocked!r}\n" + _BLOCK.replace("MODULE", module))
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.endswith(hint), message
    assert f"{module} needs the" in message


def _requirements(extra: str) -> set[str]:
    """The distributions ``pip install "stageguard[extra]"`` asks for (nested extras resolved)."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras, names, todo = project["optional-dependencies"], set(), [extra]
    requirements = list(project["dependencies"])
    while todo:
        for requirement in extras[todo.pop()]:
            nested = re.fullmatch(r"stageguard\[(.+)\]", requirement)
            if nested:
                todo.extend(nested.group(1).split(","))
            else:
                requirements.append(requirement)
    for requirement in requirements:
        names.add(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_notebooks_extra_installs_what_the_notebooks_import() -> None:
    import importlib.metadata

    sources = (Path(__file__).parents[1] / "notebooks" / "src").glob("*.py")
    modules = (
        {
            m.group(1)
            for source in sources
            for m in re.finditer(r"^\s*(?:from|import) (\w+)", source.read_text(encoding="utf-8"), re.M)
        }
        - set(sys.stdlib_module_names)
        - {"stageguard"}
    )
    providers = importlib.metadata.packages_distributions()
    wanted = _requirements("all")
    assert {"ipykernel", "nbclient", "matplotlib"} <= _requirements("notebooks")
    missing = [m for m in sorted(modules) if not {d.lower().replace("_", "-") for d in providers[m]} & wanted]
    assert not missing, f'pip install "stageguard[all]" does not install {missing}'
