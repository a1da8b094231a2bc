"""Server-side custom metrics: ``stageguard serve --metrics MODULE`` and ``stageguard.metrics`` entry
points, used through Galileo's own SDK against a real server on loopback (invoke threads and the worker
process for large payloads), listed by ``GET /metrics/catalogue`` and ``stageguard metrics``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _server_support import Harness, LiveServer, galileo_sdk_env, make_harness, start_live

from stageguard import register_metric
from stageguard.cli import main
from stageguard.metrics import find_metric, remove_custom_metric
from stageguard.scorers.registry import MetricPluginError, default_registry, load_metric_entry_points
from stageguard.server import ServerSettings, create_app

galileo_config = pytest.importorskip("galileo.config")
galileo_stages = pytest.importorskip("galileo.stages")
galileo_protect = pytest.importorskip("galileo.protect")
from galileo_core.schemas.protect.action import OverrideAction  # noqa: E402
from galileo_core.schemas.protect.execution_status import ExecutionStatus  # noqa: E402
from galileo_core.schemas.protect.payload import Payload  # noqa: E402
from galileo_core.schemas.protect.rule import Rule, RuleOperator  # noqa: E402
from galileo_core.schemas.protect.ruleset import Ruleset  # noqa: E402
from galileo_core.schemas.protect.stage import StageType  # noqa: E402

PLUGIN = "_custom_metrics_plugin"
PLUGIN_METRICS = ("shouting", "mood", "worker_pid")
THRESHOLD = 2_000  # payloads with this many characters of text go to the worker process


def _forget(*metrics: str, module: str | None = None) -> None:
    for metric in metrics:
        remove_custom_metric(metric)
        default_registry.unregister(metric)
    if module is not None:
        sys.modules.pop(module, None)


@pytest.fixture
def plugin_server(tmp_path: Path) -> Iterator[Harness]:
    """A server started with ``--metrics _custom_metrics_plugin`` and one invoke worker process."""
    harness = make_harness(
        str(tmp_path / "stages.db"),
        metrics=(PLUGIN,),
        invoke_processes=1,
        process_threshold=THRESHOLD,
    )
    try:
        with harness.client:  # the lifespan starts the worker process
            yield harness
    finally:
        harness.databases.close()
        _forget(*PLUGIN_METRICS, module=PLUGIN)


@pytest.fixture
def sdk(plugin_server: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    live = start_live(plugin_server)
    try:
        with galileo_sdk_env(monkeypatch, live.url, plugin_server.key("acme", "admin"), tmp_path / "galileo"):
            yield live
    finally:
        live.stop()


def _ruleset(metric: str, operator: RuleOperator, target: Any, choice: str) -> Ruleset:
    return Ruleset(
        rules=[Rule(metric=metric, operator=operator, target_value=target)],
        action=OverrideAction(choices=[choice]),
    )


def test_custom_metrics_through_the_sdk(sdk: LiveServer) -> None:
    runner = sdk.harness.app.state.stageguard.runner
    galileo_stages.create_protect_stage(
        project_name="acme",
        name="manners",
        stage_type=StageType.central,
        prioritized_rulesets=[
            _ruleset("shouting", RuleOperator.gt, 0.8, "please don't shout"),
            _ruleset("mood", RuleOperator.eq, "grumpy", "cheer up"),
        ],
    )

    def invoke(payload: Payload) -> Any:
        return galileo_protect.invoke_protect(payload, project_name="acme", stage_name="manners")

    shouted = invoke(Payload(input="STOP DOING THAT", output="ok"))
    assert shouted.status == ExecutionStatus.triggered and shouted.text == "please don't shout"
    grumpy = invoke(Payload(input="hello there", output="grr, fine"))
    assert grumpy.status == ExecutionStatus.triggered and grumpy.text == "cheer up"
    calm = invoke(Payload(input="hello there", output="sure"))
    assert calm.status == ExecutionStatus.not_triggered and calm.text == "sure"

    # a large payload is evaluated in the worker process, which imported the same --metrics module
    big = invoke(Payload(input="LOUD " * THRESHOLD, output="ok"))
    assert big.status == ExecutionStatus.triggered and big.text == "please don't shout"
    assert runner._processes is not None and not runner._thread_only


def test_large_payloads_run_in_the_worker_process(sdk: LiveServer) -> None:
    runner = sdk.harness.app.state.stageguard.runner
    galileo_stages.create_protect_stage(
        project_name="acme",
        name="pid",
        stage_type=StageType.central,
        prioritized_rulesets=[_ruleset("worker_pid", RuleOperator.neq, float(os.getpid()), "elsewhere")],
    )
    small = galileo_protect.invoke_protect(Payload(input="hi"), project_name="acme", stage_name="pid")
    assert small.status == ExecutionStatus.not_triggered  # threads of this process
    big = galileo_protect.invoke_protect(
        Payload(input="x" * (THRESHOLD + 1)), project_name="acme", stage_name="pid"
    )
    assert big.status == ExecutionStatus.triggered and big.text == "elsewhere"  # another process
    assert not runner._thread_only


def test_run_time_custom_metric_stays_on_threads(sdk: LiveServer) -> None:
    """A metric registered at run time in the server process only is unknown to the worker process:
    its large payloads are evaluated on the server's threads instead."""
    runner = sdk.harness.app.state.stageguard.runner
    register_metric("whispering", lambda p: 1.0 if (p.input or "").islower() else 0.0)
    try:
        galileo_stages.create_protect_stage(
            project_name="acme",
            name="quiet",
            stage_type=StageType.central,
            prioritized_rulesets=[_ruleset("whispering", RuleOperator.gte, 1.0, "speak up")],
        )
        for _ in range(2):  # the second time straight to the threads
            big = galileo_protect.invoke_protect(
                Payload(input="psst " * THRESHOLD), project_name="acme", stage_name="quiet"
            )
            assert big.status == ExecutionStatus.triggered and big.text == "speak up"
        assert len(runner._thread_only) == 1
    finally:
        _forget("whispering")


def test_catalogue_route_lists_built_in_and_custom_metrics(plugin_server: Harness) -> None:
    client = plugin_server.client
    assert client.get("/metrics/catalogue").status_code == 401
    response = client.get("/metrics/catalogue", headers=plugin_server.headers("acme", "app"))
    assert response.status_code == 200, response.text
    catalogue = {entry["name"]: entry for entry in response.json()}
    assert catalogue["input_pii"]["custom"] is False and catalogue["input_pii"]["kind"] == "categories"
    assert "email" in catalogue["input_pii"]["labels"]
    shouting = catalogue["shouting"]
    assert shouting["custom"] is True and shouting["kind"] == "score"
    assert shouting["required_fields"] == ["input"] and shouting["description"] == "ALL CAPS input"
    assert "gt" in shouting["operators"]
    assert catalogue["mood"]["labels"] == ["calm", "grumpy"] and catalogue["mood"]["kind"] == "category"


def test_unknown_metric_is_a_clear_4xx(plugin_server: Harness) -> None:
    client, headers = plugin_server.client, plugin_server.headers()
    rulesets = [{"rules": [{"metric": "no_such_metric", "operator": "gt", "target_value": 0.5}]}]
    created = client.post(
        f"/projects/{plugin_server.project_id('acme')}/stages",
        json={"name": "bad", "type": "central", "prioritized_rulesets": rulesets},
        headers=headers,
    )
    invoked = client.post(
        "/protect/invoke",
        json={"payload": {"input": "hi"}, "prioritized_rulesets": rulesets},
        headers=plugin_server.headers("acme", "app"),
    )
    for response in (created, invoked):
        assert response.status_code == 422, response.text
        message = json.dumps(response.json())
        assert "no_such_metric" in message
        assert "input_pii" in message and "shouting" in message  # what is available


def test_serve_reports_a_metrics_module_that_fails_to_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAGEGUARD_METRICS", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # serve makes the current directory importable
    db = str(tmp_path / "stages.db")
    assert main(["serve", "--db", db, "--metrics", "no_such_metrics_module"]) == 2
    err = capsys.readouterr().err
    assert "could not import the metrics module 'no_such_metrics_module'" in err
    assert "Traceback" not in err and "STAGEGUARD_METRICS" not in os.environ

    (tmp_path / "broken_metrics.py").write_text("raise RuntimeError('boom at import')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEGUARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "stageguard", "serve", "--db", db, "--metrics", "broken_metrics"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "stageguard: error: could not import the metrics module 'broken_metrics'" in result.stderr
    assert "boom at import" in result.stderr and "Traceback" not in result.stderr

    with pytest.raises(MetricPluginError, match="no_such_metrics_module"):
        create_app(
            ServerSettings(db=db, warm_up=False, invoke_processes=0, metrics=("no_such_metrics_module",))
        )


def test_cli_metrics_lists_the_catalogue(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        assert main(["metrics", "--metrics", PLUGIN, "--json"]) == 0
        catalogue = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
        assert catalogue["shouting"]["custom"] is True and catalogue["output_pii"]["custom"] is False
        assert main(["metrics"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert any(line.startswith("mood ") and "custom" in line and "grumpy" in line for line in lines)
    finally:
        _forget(*PLUGIN_METRICS, module=PLUGIN)


def test_entry_points_register_metrics_at_server_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package's ``stageguard.metrics`` entry points: a module and a callable."""
    site = tmp_path / "site"
    dist = site / "sg_metrics_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sg-metrics-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[stageguard.metrics]\nbymodule = sg_ep_module\nbycall = sg_ep_callable:register\n"
    )
    (site / "sg_ep_module.py").write_text(
        "from stageguard import register_metric\nregister_metric('ep_module_metric', lambda p: 0.0)\n"
    )
    (site / "sg_ep_callable.py").write_text(
        "from stageguard import register_metric\n"
        "def register():\n"
        "    register_metric('ep_callable_metric', lambda p: 'x', kind='category')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        harness = make_harness(str(tmp_path / "stages.db"))
        try:
            response = harness.client.get("/metrics/catalogue", headers=harness.headers())
            names = {entry["name"] for entry in response.json()}
            assert {"ep_module_metric", "ep_callable_metric"} <= names
            # loaded once per process: a second server in this process doesn't register them again
            assert sorted(load_metric_entry_points()) == [
                "bycall = sg_ep_callable:register",
                "bymodule = sg_ep_module",
            ]
        finally:
            harness.databases.close()
        disabled = ServerSettings(db=str(tmp_path / "other.db"), metric_entry_points=False)
        assert disabled.metric_entry_points is False
    finally:
        _forget("ep_module_metric", "ep_callable_metric", module="sg_ep_module")
        sys.modules.pop("sg_ep_callable", None)
    assert find_metric("ep_module_metric") is None


def test_serve_command_loads_metrics_modules(tmp_path: Path) -> None:
    """``stageguard serve --metrics MODULE`` as a real process: the module is importable from the
    current directory, in the server process and in its invoke worker process."""
    import httpx
    from _server_support import free_port

    (tmp_path / "cli_metrics.py").write_text(
        "import os\n"
        "from stageguard import register_metric\n"
        "register_metric('exclaims', lambda p: float((p.input or '').count('!')), kind='number')\n"
        "register_metric('pid', lambda p: float(os.getpid()), kind='number')\n"
    )
    db = str(tmp_path / "stages.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAGEGUARD_", "GALILEO_"))}
    env.update(STAGEGUARD_WARM_UP="0", STAGEGUARD_PROCESS_THRESHOLD="1000")
    create = ["keys", "create", "--db", db, "--project", "acme", "--role", "app"]
    created = subprocess.run(
        [sys.executable, "-m", "stageguard", *create],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    port = free_port()
    serve = ["serve", "--db", db, "--port", str(port), "--metrics", "cli_metrics", "--log-level", "warning"]
    server = subprocess.Popen(
        [sys.executable, "-m", "stageguard", *serve],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        catalogue = httpx.get(f"{url}/metrics/catalogue", headers=headers, timeout=10).json()
        assert {"name": "exclaims", "kind": "number", "custom": True}.items() <= next(
            entry for entry in catalogue if entry["name"] == "exclaims"
        ).items()

        def invoke(metric: str, operator: str, target: float, text: str) -> tuple[str, str]:
            rulesets = [
                {
                    "rules": [{"metric": metric, "operator": operator, "target_value": target}],
                    "action": {"type": "OVERRIDE", "choices": ["caught"]},
                }
            ]
            response = httpx.post(
                f"{url}/protect/invoke",
                json={"payload": {"input": text}, "prioritized_rulesets": rulesets},
                headers=headers,
                timeout=30,
            )
            assert response.status_code == 200, response.text
            return response.json()["status"], response.json()["text"]

        big = "wow!!! " + "x" * 2000
        assert invoke("exclaims", "gte", 3, "wow!!!") == ("TRIGGERED", "caught")  # threads
        assert invoke("exclaims", "gte", 3, big) == ("TRIGGERED", "caught")  # the worker process
        # the metric ran in the server process (threads), then in another one (the worker process)
        assert invoke("pid", "neq", server.pid, "small")[0] == "NOT_TRIGGERED"
        assert invoke("pid", "neq", server.pid, big) == ("TRIGGERED", "caught")
    finally:
        server.terminate()
        server.wait(timeout=30)
