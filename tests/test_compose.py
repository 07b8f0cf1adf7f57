"""docker-compose.yaml and its Dockerfile, checked without a Docker engine (there is none here).

- The file, after Compose's own variable interpolation, validates against the Compose
  specification's JSON schema (the copy that the pinned `check-jsonschema` package vendors from
  compose-spec), and the `check-jsonschema` command line accepts it as written.
- What the schema cannot see: every `depends_on`, volume and config points at something declared,
  no service of the default set depends on a `demo` one, and the set of services is the one the
  README promises (CeleryExecutor, PostgreSQL, Redis, api-server, scheduler, dag-processor,
  triggerer, two workers, an init service; sandbox and warehouse under the `demo` profile).
- Every command that a service of the mogulflow image runs exists in this Airflow version's CLI,
  the image's version: `airflow <command> --help` succeeds, and Airflow's own argument parser
  accepts the full command line (options and arguments included), also inside the shell scripts.
- The init script runs for real against a throwaway SQLite home (secrets, pool, connections), and
  the demo warehouse's loader for real against the local PostgreSQL.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import yaml
from repo_paths import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
BIN = Path(sys.executable).parent
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
}
DEMO_SERVICES = {"chartmogul-sandbox", "warehouse", "warehouse-sample", "demo-run"}

# ---- Compose's interpolation: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<invalid>))"
)


def _interpolate(text: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["plain"]:
            return env.get(match["plain"], "")
        if match["invalid"] is not None:
            raise ValueError(f"invalid interpolation (use $$ for a literal $): {text!r}")
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op is None:
            return value or ""
        if op == ":-":
            return value if value else arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise ValueError(f"{name} is required: {arg}")
            return value
        return arg if value else ""  # :+ and +

    return _VARIABLE.sub(substitute, text)


def _interpolated(node, env: dict[str, str]):
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolated(value, env) for value in node]
    if isinstance(node, str):
        return _interpolate(node, env)
    return node


def _dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _compose(env: dict[str, str] | None = None) -> dict:
    return _interpolated(yaml.safe_load(COMPOSE_FILE.read_text()), env or {})


def _compose_schema() -> dict:
    schemas = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
    return json.loads((schemas / "compose-spec.json").read_text())


def _argv(command) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(command)


# ---- the file against the specification ------------------------------------------------------


@pytest.mark.parametrize("env_name", ["no .env", ".env.example"])
def test_compose_file_validates_against_the_compose_spec_schema(env_name):
    env = {} if env_name == "no .env" else _dotenv(ENV_EXAMPLE)
    compose = _compose(env)
    validator = jsonschema.Draft202012Validator(_compose_schema())
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_compose_schema_rejects_what_compose_rejects():
    """The validator is not a rubber stamp: unknown keys and wrong types fail."""
    validator = jsonschema.Draft202012Validator(_compose_schema())
    good = _compose()
    broken_key = json.loads(json.dumps(good))
    broken_key["services"]["redis"]["helthcheck"] = {}
    broken_type = json.loads(json.dumps(good))
    broken_type["services"]["airflow-worker-1"]["depends_on"]["redis"]["condition"] = 3
    assert list(validator.iter_errors(broken_key))
    assert list(validator.iter_errors(broken_type))


def test_check_jsonschema_cli_accepts_the_file_as_written():
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_reference_points_at_something_declared_and_demo_stays_optional():
    compose = _compose()
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})
    configs = set(compose.get("configs") or {})
    for name, service in services.items():
        for target in service.get("depends_on") or {}:
            assert target in services, f"{name} depends on undefined {target}"
            if not service.get("profiles"):
                assert not services[target].get("profiles"), f"{name} (always on) depends on {target}"
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount["source"]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        for config in service.get("configs") or []:
            assert (config if isinstance(config, str) else config["source"]) in configs
    used = {
        (m.split(":", 1)[0] if isinstance(m, str) else m["source"])
        for s in services.values()
        for m in s.get("volumes") or []
    }
    assert volumes <= used, f"declared but unused volumes: {volumes - used}"


def test_the_cluster_the_readme_promises():
    compose = _compose(_dotenv(ENV_EXAMPLE))
    services = compose["services"]
    assert AIRFLOW_SERVICES | DEMO_SERVICES | {"postgres", "redis"} == set(services)
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default == AIRFLOW_SERVICES | {"postgres", "redis"}
    assert {name for name, s in services.items() if s.get("profiles") == ["demo"]} == DEMO_SERVICES

    for name in AIRFLOW_SERVICES | {"demo-run"}:
        service = services[name]
        env = service["environment"]
        assert service["build"]["context"] == "."
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        # one secret for all: each comes from the shared volume that airflow-init fills
        for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
            assert env[f"{key}_CMD"].startswith("cat /opt/airflow/secrets/")
        assert "airflow-secrets:/opt/airflow/secrets" in service["volumes"]
        # hand-offs go through the warehouse (or an object store), never a folder workers would share
        assert "MOGULFLOW_STAGING_DIR" not in env and env["MOGULFLOW_STAGING_URL"] == ""
        assert not [volume for volume in service["volumes"] if "staging" in volume]
        if name != "airflow-init":
            assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")

    hostnames = set()
    for worker in ("airflow-worker-1", "airflow-worker-2"):
        argv = _argv(services[worker]["command"])
        assert argv[:2] == ["celery", "worker"]
        hostnames.add(argv[argv.index("--celery-hostname") + 1])
    assert len(hostnames) == 2

    sandbox = _argv(services["chartmogul-sandbox"]["command"])
    assert sandbox[:3] == ["python", "-m", "mogulflow_sandbox"]
    assert sandbox[sandbox.index("--host") + 1] == "0.0.0.0"
    assert services["warehouse"]["image"].startswith("postgres:")
    # the demo's connections (.env.example) point at the demo's services
    dotenv = _dotenv(ENV_EXAMPLE)
    chartmogul = json.loads(dotenv["MOGULFLOW_CHARTMOGUL_CONN"])
    warehouse = json.loads(dotenv["MOGULFLOW_WAREHOUSE_CONN"])
    assert chartmogul["conn_type"] == "chartmogul"
    assert chartmogul["host"] == f"http://chartmogul-sandbox:{sandbox[sandbox.index('--port') + 1]}"
    assert warehouse["conn_type"] == "postgres"
    assert warehouse["host"] == "warehouse"
    assert warehouse["schema"] == services["warehouse"]["environment"]["POSTGRES_DB"]
    assert warehouse["password"] == dotenv["DEMO_WAREHOUSE_PASSWORD"]


def test_dockerfile_builds_on_the_airflow_image_of_this_version_and_installs_the_wheel():
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    assert args["AIRFLOW_VERSION"] == version("apache-airflow")
    assert args["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms and all(f == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}" for f in froms)
    assert "pip wheel --no-cache-dir --no-deps" in text
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text
    assert 'mogulflow-*.whl)[${MOGULFLOW_EXTRAS}]"' in text
    extras = set(re.search(r"^ARG MOGULFLOW_EXTRAS=(\S+)$", text, re.MULTILINE).group(1).split(","))
    assert extras == {"celery", "postgres", "sandbox"}  # the demo profile needs the sandbox
    # the wheel brings the SQL and the page; the DAG files are the thin ones `mogulflow dags` writes
    assert "RUN mogulflow dags --into /opt/airflow/dags" in text
    assert "include/sql" not in text and "MOGULFLOW_SQL_DIR=" not in text
    assert "mogulflow_monitor.py" not in text  # the page comes through the wheel's entry point
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repository"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored
    assert ".env" in ignored


def test_the_file_says_it_is_a_local_set_up_and_publishes_ports_on_loopback_only():
    text = COMPOSE_FILE.read_text()
    assert "A LOCAL SET-UP, NOT HARDENED FOR PRODUCTION" in text
    for change in ("SimpleAuthManager", "AIRFLOW_ADMIN_PASSWORD", "reverse proxy", "AUTH_MANAGER"):
        assert change in text, f"the header should say what to change for production: {change}"
    assert "docker compose --profile demo up --build" in text
    for name, service in _compose()["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    readme = (REPO / "README.md").read_text()
    assert "docker compose --profile demo up --build" in readme


# ---- the commands exist in this Airflow version's CLI -----------------------------------------

_PLACEHOLDERS = {"$1": "conn_id", "$2": "{}", "$name": "x", "$HOSTNAME": "host"}


def _airflow_lines(script: str) -> list[list[str]]:
    """Each `airflow ...` invocation of a shell script, as argv (after `airflow`)."""
    found = []
    for match in re.finditer(r"(?:^|[\s;&|(])airflow\s+([^;&|>\n]+)", script, re.MULTILINE):
        words = shlex.split(match.group(1).replace("${HOSTNAME}", "$HOSTNAME"))
        found.append([_PLACEHOLDERS.get(word, word) for word in words])
    return found


def _commands() -> dict[str, list[list[str]]]:
    """Per service of the mogulflow image: the airflow argvs it runs, its shell scripts, its python."""
    compose = _compose(_dotenv(ENV_EXAMPLE))
    airflow, scripts, python = [], [], []
    for service in compose["services"].values():
        if "build" not in service:
            continue
        argv = _argv(service["command"])
        checks = [service.get("healthcheck", {}).get("test", [])]
        if argv[0] == "bash":
            assert argv[1] == "-c"
            scripts.append(argv[2])
            airflow.extend(_airflow_lines(argv[2]))
        elif argv[0] == "python":
            python.append(argv[1:])
        else:  # the image's entrypoint runs `airflow ARGS`
            airflow.append(argv)
        for test in checks:
            if test and test[0] == "CMD-SHELL":
                scripts.append(test[1])
                airflow.extend(_airflow_lines(test[1]))
    return {"airflow": airflow, "scripts": scripts, "python": python}


@pytest.mark.slow
def test_every_service_command_exists_in_this_airflow_cli(tmp_path):
    commands = _commands()
    argvs = commands["airflow"]
    assert ["api-server"] in argvs
    assert ["scheduler"] in argvs
    assert ["dag-processor"] in argvs
    assert ["triggerer"] in argvs
    assert ["db", "migrate"] in argvs
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
    }

    # `airflow <command> --help` for each distinct command (the words before the first option)
    def help_of(argv: list[str]) -> tuple[list[str], int, str]:
        words = []
        for word in argv:
            if word.startswith("-") or len(words) == 2:
                break
            words.append(word)
        result = subprocess.run(
            [str(BIN / "airflow"), *words, "--help"], env=env, capture_output=True, text=True, timeout=120
        )
        return words, result.returncode, result.stderr[-1000:]

    distinct = {
        tuple(a[:2]) if a[0] in {"db", "pools", "connections", "dags", "jobs", "celery"} else (a[0],): a
        for a in argvs
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        for words, code, stderr in pool.map(help_of, distinct.values()):
            assert code == 0, f"airflow {' '.join(words)} --help failed: {stderr}"

    # and Airflow's own parser accepts every full command line
    parse = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from airflow.cli.cli_parser import get_parser\n"
            "bad = []\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    try:\n"
            "        get_parser().parse_args(argv)\n"
            "    except SystemExit:\n"
            "        bad.append(argv)\n"
            "print('BAD ' + json.dumps(bad))\n",
            json.dumps(argvs),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert parse.returncode == 0, parse.stderr[-2000:]
    bad = json.loads(next(x for x in parse.stdout.splitlines() if x.startswith("BAD ")).removeprefix("BAD "))
    assert bad == []


def test_shell_scripts_parse_and_python_commands_exist():
    commands = _commands()
    for script in commands["scripts"]:
        result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    compose = _compose()
    for argv in commands["python"]:
        if argv[0] == "-m":
            result = subprocess.run(
                [sys.executable, "-m", argv[1], "--help"], capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stderr[-1000:]
        else:  # a script that the compose file mounts from its configs
            targets = {
                config["target"]: config["source"]
                for service in compose["services"].values()
                for config in service.get("configs") or []
            }
            source = compose["configs"][targets[argv[0]]]["content"]
            compile(source, argv[0], "exec")


# ---- the init script and the demo warehouse's loader, run for real -----------------------------


def _init_script() -> str:
    return _argv(_compose()["services"]["airflow-init"]["command"])[2]


@pytest.mark.slow
def test_init_script_writes_secrets_creates_the_pool_and_the_connections(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    dotenv = _dotenv(ENV_EXAMPLE)
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW_SECRETS_DIR": str(secrets),
        "AIRFLOW__CORE__FERNET_KEY_CMD": f"cat {secrets}/fernet_key",
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD": f"cat {secrets}/jwt_secret",
        "AIRFLOW__API__SECRET_KEY_CMD": f"cat {secrets}/api_secret_key",
        "AIRFLOW_ADMIN_PASSWORD": dotenv["AIRFLOW_ADMIN_PASSWORD"],
        "MOGULFLOW_CHARTMOGUL_CONN": dotenv["MOGULFLOW_CHARTMOGUL_CONN"],
        "MOGULFLOW_WAREHOUSE_CONN": dotenv["MOGULFLOW_WAREHOUSE_CONN"],
    }
    first = subprocess.run(
        ["bash", "-c", _init_script()], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "airflow-init: done" in first.stdout
    written = {name: (secrets / name).read_text() for name in ("fernet_key", "jwt_secret", "api_secret_key")}
    assert len(written["jwt_secret"]) >= 64
    assert json.loads((secrets / "passwords.json").read_text()) == {"admin": dotenv["AIRFLOW_ADMIN_PASSWORD"]}

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json\n"
            "from airflow.models import Connection, Pool\n"
            "from airflow.utils.session import create_session\n"
            "with create_session() as s:\n"
            "    pool = s.query(Pool).filter(Pool.pool == 'chartmogul_api').one()\n"
            "    conns = {c.conn_id: [c.conn_type, c.host, c.password] for c in s.query(Connection)}\n"
            "print('PROBE ' + json.dumps({'slots': pool.slots, 'connections': conns}))\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(
        next(x for x in probe.stdout.splitlines() if x.startswith("PROBE ")).removeprefix("PROBE ")
    )
    chartmogul = json.loads(dotenv["MOGULFLOW_CHARTMOGUL_CONN"])
    assert found["slots"] == 1
    assert found["connections"]["chartmogul_default"] == [
        "chartmogul",
        chartmogul["host"],
        chartmogul["password"],
    ]
    assert found["connections"]["warehouse_default"][:2] == ["postgres", "warehouse"]

    # a second run (every `docker compose up`) keeps the secrets
    second = subprocess.run(
        ["bash", "-c", _init_script()], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert {name: (secrets / name).read_text() for name in written} == written


@pytest.mark.slow
@pytest.mark.postgres
def test_demo_warehouse_loader_fills_a_postgres_warehouse_once(postgres_database, tmp_path):
    import psycopg

    from mogulflow_demo.sample_warehouse import build_sample_frames

    script = tmp_path / "load_demo_warehouse.py"
    script.write_text(_compose()["configs"]["load-demo-warehouse"]["content"])
    dsn = " ".join(f"{key}={value}" for key, value in postgres_database.items())
    env = {**os.environ, "DEMO_WAREHOUSE_DSN": dsn}
    first = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    _, stats = build_sample_frames()
    with psycopg.connect(**postgres_database) as connection:
        for table, rows in stats.rows.items():
            assert connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows
        nulls = connection.execute("SELECT count(*) FROM leads WHERE lead_created_at IS NULL").fetchone()[0]
    assert nulls > 0  # missing values arrive as NULL, not as text
    second = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already holds the sample tables" in second.stdout
