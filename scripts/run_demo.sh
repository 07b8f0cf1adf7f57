#!/usr/bin/env bash
# `make run`: build the sample DuckDB warehouse, start the local ChartMogul sandbox, run one full
# sync of chartmogul_leads_trials with `airflow dags test`, print the run's account, stop the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
DEMO=${MOGULFLOW_DEMO_DIR:-$ROOT/var/demo}
mkdir -p "$DEMO"

export AIRFLOW_HOME=$DEMO/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
WAREHOUSE=$DEMO/warehouse.duckdb

echo "==> Building the sample warehouse ($WAREHOUSE)"
rm -f "$WAREHOUSE" "$WAREHOUSE.wal"
"$BIN/mogulflow" sample-warehouse "$WAREHOUSE" --attributes

# The sandbox takes 8999 when it is free, any free port otherwise; it prints the URL it serves.
PORT=$("$BIN/python" - <<'PY'
import socket
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", 8999))
        print(8999)
    except OSError:
        print(0)
PY
)
API_KEY=demo_$("$BIN/python" -c 'import secrets; print(secrets.token_hex(12))')
SANDBOX_LOG=$DEMO/sandbox.log
"$BIN/mogulflow" sandbox --port "$PORT" --api-key "$API_KEY" >"$SANDBOX_LOG" 2>&1 &
SANDBOX_PID=$!
stop_sandbox() {
    if kill -0 "$SANDBOX_PID" 2>/dev/null; then
        kill -TERM "$SANDBOX_PID" 2>/dev/null || true
        wait "$SANDBOX_PID" 2>/dev/null || true
    fi
}
trap stop_sandbox EXIT INT TERM

URL=""
for _ in $(seq 1 100); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SANDBOX_LOG" | head -n 1 || true)
    [ -n "$URL" ] && break
    kill -0 "$SANDBOX_PID" 2>/dev/null || { cat "$SANDBOX_LOG"; echo "sandbox did not start" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { cat "$SANDBOX_LOG"; echo "sandbox did not report its URL" >&2; exit 1; }
echo "==> ChartMogul sandbox at $URL"

# The sandbox has no rate limit of its own: the demo paces at 100 requests/s instead of the real API's 35.
export AIRFLOW_CONN_CHARTMOGUL_DEFAULT="{\"conn_type\": \"chartmogul\", \"host\": \"$URL\", \"password\": \"$API_KEY\", \"extra\": {\"requests_per_second\": 100}}"
export AIRFLOW_CONN_WAREHOUSE_DEFAULT="{\"conn_type\": \"duckdb\", \"host\": \"$WAREHOUSE\"}"

echo "==> Preparing Airflow ($AIRFLOW_HOME)"
"$BIN/airflow" db migrate >"$DEMO/airflow-db.log" 2>&1 || { tail -n 40 "$DEMO/airflow-db.log"; exit 1; }
"$BIN/mogulflow" pool >/dev/null

echo "==> Running chartmogul_leads_trials (full refresh); log: $DEMO/dag-run.log"
STATUS=0
"$BIN/airflow" dags test chartmogul_leads_trials --conf '{"full_refresh": true}' >"$DEMO/dag-run.log" 2>&1 || STATUS=$?

"$BIN/mogulflow" report --duckdb "$WAREHOUSE"
if [ "$STATUS" -ne 0 ]; then
    echo "airflow dags test exited with $STATUS; last lines of $DEMO/dag-run.log:" >&2
    tail -n 40 "$DEMO/dag-run.log" >&2
    exit "$STATUS"
fi
