"""A real CeleryExecutor cluster on this machine, for tests: start it, drive it over REST, stop it.

`Cluster` runs an api-server, a scheduler, a dag-processor, a triggerer and two Celery workers as
separate process groups, on a throwaway PostgreSQL metadata database and a Redis DB number no one
else uses (checked empty, claimed, flushed afterwards). Settings and pins follow
`../shared/CELERY-NOTES.md`. Each worker runs in its own mount namespace with a private tmpfs over
`/tmp` and over the old local staging root (`$AIRFLOW_HOME/mogulflow`), as a second machine would
have: nothing one task hands the next may live on a worker's local disk. What every machine of a
cluster shares (the checkout with its dags/, plugins/ and .venv, the cluster's scratch folder, the
Python installation) is bound back into the private /tmp when it lives there, so the checkout may
be anywhere. Each worker reports its own name (`w1`, `w2`) as the task instances' hostname. Tasks
may be pinned to a worker: a cluster policy sends them to a queue only that worker consumes,
whatever the others do.

Every process started here carries `MOGULFLOW_CLUSTER_ID` in its environment; `stop()` ends them
all (SIGTERM to each process group, then SIGKILL to whatever is left of their trees) and
`leftover_pids()` finds any that survived, by that mark.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Redis DB numbers the cluster may claim (DB 0 and the low ones are left to the machine's users).
REDIS_DBS = range(10, 16)
REDIS_CLAIM_KEY = "mogulflow-cluster-test-claim"
CLUSTER_MARK = "MOGULFLOW_CLUSTER_ID"
WORKERS = ("w1", "w2")
ENDED = ("success", "failed")  # a DAG run's final states
CELERY_QUEUE = "default"  # Airflow's [operators] default_queue
READY_TIMEOUT = 240.0  # six Airflow components importing on 2 shared cores
STOP_GRACE = 45.0  # the triggerer alone waits 10 s for its triggers
TMP = Path("/tmp")  # a worker's private local disk, with the old staging root


class PrivateDisksUnavailable(RuntimeError):
    """This machine cannot give a worker its own mount namespace (no root or CAP_SYS_ADMIN)."""


def in_private_disks(script: str, command: list[str]) -> list[str]:
    """`command` run in a new private mount namespace, after `script` has set up its mounts there."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        f"{script} && exec {shlex.join(command)}",
    ]


def shared_under_tmp(folders: list[Path]) -> list[Path]:
    """The outermost of `folders` (resolved) that lie under /tmp: what a private /tmp must bind back."""
    under = sorted({f.resolve() for f in folders if f.resolve().is_relative_to(TMP)})
    return [f for f in under if not any(f != o and f.is_relative_to(o) for o in under)]


def pinned_queue(worker: str) -> str:
    """The Celery queue only `worker` consumes: where the tasks pinned to it go."""
    return f"only-{worker}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(root: int) -> set[int]:
    """Every live process below `root`, through the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def marked_pids(mark: str) -> set[int]:
    """Live processes whose environment carries `CLUSTER_MARK=mark`."""
    needle = f"{CLUSTER_MARK}={mark}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0") and _alive(int(entry.name)):
                    found.add(int(entry.name))
    return found


@dataclass
class Component:
    """One cluster process, the leader of its own process group."""

    name: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """Six Airflow processes sharing a PostgreSQL metadata DB and a Redis broker DB."""

    scratch: Path  # AIRFLOW_HOME and logs, shared by every component (bound back if under /tmp)
    connections: Mapping[str, str]  # AIRFLOW_CONN_* variables the tasks use
    extra_env: Mapping[str, str] = field(default_factory=dict)
    pinned: Mapping[str, str] = field(default_factory=dict)  # task id → the one worker that runs it
    cluster_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    components: dict[str, Component] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.scratch / "home"
        self.logs = self.scratch / "logs"
        self.metadata_db = f"mogulflow_cluster_{self.cluster_id}"
        self.api_port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.redis_db: int | None = None
        self._token: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Cluster:
        started = time.monotonic()
        self.home.mkdir(parents=True)
        self.logs.mkdir(parents=True)
        (self.home / "mogulflow").mkdir()  # the old local staging root: each worker gets a tmpfs over it
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        self._write_pythonpath_modules()
        self.check_private_disks()
        self.redis_db = claim_redis_db()
        _create_database(self.metadata_db)
        migrate = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if migrate.returncode:
            raise RuntimeError(
                f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
            )
        self.timings["migrate"] = time.monotonic() - started
        self._launch("api-server", ["airflow", "api-server"])
        self._launch("scheduler", ["airflow", "scheduler"])
        self._launch("dag-processor", ["airflow", "dag-processor"])
        self._launch("triggerer", ["airflow", "triggerer"])
        for worker in WORKERS:
            self.start_worker(worker)
        self.wait_until_ready()
        self.timings["start"] = time.monotonic() - started
        return self

    def start_worker(self, name: str) -> None:
        """A Celery worker in a private mount namespace: its own tmpfs over /tmp and the old staging root."""
        command = ["airflow", "celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h"]
        command += ["--queues", f"{CELERY_QUEUE},{pinned_queue(name)}"]
        if name != WORKERS[0]:
            command.append("--skip-serve-logs")  # one log server per host port (CELERY-NOTES §4.2)
        self._launch(
            name,
            in_private_disks(self._private_disks_script(name), command),
            env={"MOGULFLOW_CLUSTER_WORKER": name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cluster_worker.name"},
        )

    def check_private_disks(self) -> None:
        """Raise `PrivateDisksUnavailable` unless a worker's mount recipe works here.

        Runs the recipe of `start_worker` with a probe instead of the worker: the machine's /tmp
        must be hidden, and what a worker needs (the checkout wherever it lives, its .venv, the
        scratch folder) still there.
        """
        needed = (BIN / "airflow", REPO / "plugins", self.scratch / "pythonpath" / "cluster_worker.py")
        with tempfile.NamedTemporaryFile(dir=TMP, prefix="mogulflow-cluster-probe-") as outside:
            probe = f"if test -e {shlex.quote(outside.name)}; then echo '/tmp is not private'; exit 1; fi"
            for path in map(shlex.quote, map(str, needed)):
                probe += f"; test -e {path} || {{ echo 'no {path} in the private namespace'; exit 1; }}"
            done = subprocess.run(
                in_private_disks(self._private_disks_script("probe"), ["sh", "-c", probe]),
                capture_output=True,
                text=True,
                timeout=60,
            )
        if done.returncode:
            raise PrivateDisksUnavailable(
                "the cluster test gives each Celery worker private disks in its own mount namespace "
                "(`unshare --mount`, `mount -t tmpfs`: root or CAP_SYS_ADMIN), and on this machine "
                f"that failed: {(done.stdout + done.stderr).strip()}"
            )

    def _private_disks_script(self, name: str) -> str:
        """Shell commands, run inside the new namespace, that give it its own /tmp and staging root.

        The fresh /tmp is first mounted aside (on scratch/mounts/<name>), what must stay shared and
        lives under /tmp is bound into it, and only then is it moved over /tmp: a tmpfs mounted
        straight over /tmp would hide a checkout that lives there.
        """
        aside = self.scratch / "mounts" / name
        aside.mkdir(parents=True, exist_ok=True)
        tmpfs = f"mount -t tmpfs -o size=512m mogulflow-{name}"
        commands = [f"{tmpfs} {shlex.quote(str(aside))}"]
        for folder in shared_under_tmp([REPO, self.scratch, Path(sys.prefix), Path(sys.base_prefix)]):
            inside = shlex.quote(str(aside / folder.relative_to(TMP)))
            commands += [f"mkdir -p {inside}", f"mount --bind {shlex.quote(str(folder))} {inside}"]
        commands += [
            f"mount --move {shlex.quote(str(aside))} {TMP}",
            f"{tmpfs} {shlex.quote(str(self.home / 'mogulflow'))}",
        ]
        return " && ".join(commands)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every component (and every CLI call) gets."""
        sql = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.metadata_db}"
        return {
            "PATH": f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(self.scratch / "pythonpath"),
            CLUSTER_MARK: self.cluster_id,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__FERNET_KEY": "dGhpcy1pcy1hLXRlc3Qta2V5LW9mLTMyLWJ5dGVzISE=",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker-logs")),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger-logs")),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the runs a test triggers
            # A worker lost with its task is noticed after 20 s instead of 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            **self.connections,
            **self.extra_env,
            **(extra or {}),
        }

    def _secret(self, name: str) -> str:
        return self.__dict__.setdefault(f"_secret_{name}", secrets.token_urlsafe(64))

    def _port(self, name: str) -> int:
        return self.__dict__.setdefault(f"_port_{name}", free_port())

    def _write_pythonpath_modules(self) -> None:
        # Both workers share this machine's hostname; a second machine would not.
        folder = self.scratch / "pythonpath"
        folder.mkdir()
        (folder / "cluster_worker.py").write_text(
            '"""The task instances\' hostname on a test cluster\'s worker: its name."""\n\n'
            "import os\n\n\ndef name() -> str:\n"
            '    return os.environ["MOGULFLOW_CLUSTER_WORKER"]\n'
        )
        queues = {task_id: pinned_queue(worker) for task_id, worker in self.pinned.items()}
        (folder / "airflow_local_settings.py").write_text(
            '"""The test cluster\'s policy: a pinned task goes to the queue of its one worker."""\n\n'
            f"QUEUES = {queues!r}\n\n\ndef task_policy(task):\n"
            "    task.queue = QUEUES.get(task.task_id, task.queue)\n"
        )

    def _launch(self, name: str, command: list[str], env: Mapping[str, str] | None = None) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                command,
                env=self.env(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: PID = PGID
                cwd=self.scratch,
            )
        self.components[name] = Component(name, process, log)

    def wait_until_ready(self) -> None:
        """Health of the four services, both workers' "ready." line, both DAGs parsed."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            self._fail_if_exited()
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready after {READY_TIMEOUT:.0f} s:\n{self.log_tails()}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            health = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        services = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if any((health.get(service) or {}).get("status") != "healthy" for service in services):
            return False
        if not all(self._worker_ready(worker) for worker in WORKERS):
            return False
        return all(
            self.api("GET", f"/api/v2/dags/{dag_id}", check=False).status_code == 200
            for dag_id in ("chartmogul_leads_trials", "chartmogul_merge_converted_leads")
        )

    def _worker_ready(self, name: str) -> bool:
        return any(
            f"{name}@" in line and "ready." in line for line in self.components[name].log_text().splitlines()
        )

    def _fail_if_exited(self) -> None:
        for component in self.components.values():
            if component.process.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited with {component.process.returncode}:\n"
                    f"{component.log_text()[-4000:]}"
                )

    def log_tails(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log_text()[-chars:]}" for c in self.components.values())

    def only(self, *workers: str) -> None:
        """Let only `workers` take new tasks: the others stop consuming the queue (Celery remote control)."""
        from celery import Celery

        app = Celery(broker=self.env()["AIRFLOW__CELERY__BROKER_URL"])
        try:
            # Add before cancelling: some worker always consumes.
            for name in sorted(self.components.keys() & set(WORKERS), key=lambda n: n not in workers):
                node = f"{name}@{socket.gethostname()}"
                control = app.control.add_consumer if name in workers else app.control.cancel_consumer
                replies = control(CELERY_QUEUE, destination=[node], reply=True, timeout=10)
                if not replies:
                    raise RuntimeError(f"worker {node} did not answer the remote control")
        finally:
            app.close()

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process tree at once (its task processes have groups of their own)."""
        component = self.components[name]
        pids = {component.process.pid, *_descendants(component.process.pid)}
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        component.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every component; SIGKILL what is left after a grace period; drop the DB and Redis DB."""
        started = time.monotonic()
        trees = {name: _descendants(c.process.pid) for name, c in self.components.items()}
        for component in self.components.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for component in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for name, component in self.components.items():
            for pid in {component.process.pid, *trees[name], *marked_pids(self.cluster_id)}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while marked_pids(self.cluster_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.timings["stop"] = time.monotonic() - started
        with contextlib.suppress(Exception):
            _drop_database(self.metadata_db)
        if self.redis_db is not None:
            release_redis_db(self.redis_db)

    def leftover_pids(self) -> set[int]:
        return marked_pids(self.cluster_id)

    # ---- REST API ----------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _bearer(self) -> str:
        if self._token is None:
            answer = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": "admin", "password": self.password},
                timeout=30,
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> httpx.Response:
        answer = httpx.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"Bearer {self._bearer()}"},
            timeout=60,
            **kwargs,
        )
        if check and answer.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {answer.status_code}: {answer.text[:500]}")
        return answer

    def create_pool(self, name: str, slots: int) -> None:
        self.api("POST", "/api/v2/pools", json={"name": name, "slots": slots, "include_deferred": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Unpause the DAG and trigger a run; return its run id."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf)}
        )
        return run.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}").json()["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.api("GET", path).json()["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> str:
        """Poll until the run ends; return its state (success or failed)."""
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in ENDED:
            self._fail_if_exited_except_killed()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{dag_id} {run_id} still {state} after {timeout:.0f} s:\n{self.log_tails()}"
                )
            time.sleep(1.0)
        return state

    def _fail_if_exited_except_killed(self) -> None:
        for component in self.components.values():
            if component.process.poll() is not None and component.process.returncode != -signal.SIGKILL:
                raise RuntimeError(f"{component.name} exited:\n{component.log_text()[-4000:]}")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        run = quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}"
        answer = self.api("GET", path, check=False, headers={"Accept": "text/plain"})
        return answer.text


# ---- services: PostgreSQL databases and a Redis DB ----------------------------------------------------


def _admin() -> Any:
    import psycopg

    return psycopg.connect(dbname="postgres", autocommit=True, **POSTGRES)


def _create_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')


def _drop_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[dict[str, Any]]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _create_database(name)
    try:
        yield {**POSTGRES, "dbname": name}
    finally:
        _drop_database(name)


def _redis(db: int) -> Any:
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)


def claim_redis_db() -> int:
    """An empty Redis DB in REDIS_DBS, claimed with a key of ours so that a parallel run picks another."""
    for db in REDIS_DBS:
        client = _redis(db)
        try:
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, os.getpid(), nx=True):
                return db
        finally:
            client.close()
    raise RuntimeError(f"no empty Redis DB among {list(REDIS_DBS)} at {REDIS_HOST}:{REDIS_PORT}")


def release_redis_db(db: int) -> None:
    """Flush the cluster's DB: the broker leaves `_kombu.binding.*` keys behind."""
    client = _redis(db)
    try:
        client.flushdb()
    finally:
        client.close()


# ---- the sample warehouse, in PostgreSQL ------------------------------------------------------------


def load_sample_warehouse(dsn: Mapping[str, Any], billing_sources: Mapping[str, str], *, leads: int) -> Any:
    """Fill a PostgreSQL database with `mogulflow_demo.sample_warehouse`'s rows; return their `SampleStats`.

    `billing_sources` maps the sample's billing data source uuids to the sandbox's.
    """
    import pandas as pd
    import psycopg

    from mogulflow_demo.sample_warehouse import TABLES, build_sample_frames

    frames, stats = build_sample_frames(seed=7, leads=leads)
    conversions = frames["conversions"]
    conversions["billing_data_source_uuid"] = conversions["billing_data_source_uuid"].map(
        lambda uuid: billing_sources.get(uuid, uuid)
    )
    with psycopg.connect(**dsn) as connection:
        connection.execute((REPO / "plugins" / "mogulflow" / "sql" / "schema.sql").read_text())
        with connection.cursor() as cursor:
            for table in TABLES:
                frame = frames[table].astype(object)
                frame = frame.where(frame.notna(), None)
                columns = ", ".join(frame.columns)
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in frame.itertuples(index=False):
                        copy.write_row([v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in row])
    return stats, frames
