#!/usr/bin/env bash
# Build what an Amazon MWAA environment reads from its S3 bucket, into deploy/mwaa/out/:
#   dags/              the thin DAG files (mogulflow dags)
#   plugins.zip        the mogulflow wheel and constraints.txt (MWAA unpacks it to /usr/local/airflow/plugins/)
#   requirements.txt   installs the wheel from there, held to constraints.txt
# constraints.txt is resolved here for the environment's Airflow version (AIRFLOW_VERSION, default
# 3.1.8; MWAA runs Python 3.11): Airflow pinned at that version, plus mogulflow and the extras it
# needs. Upload the three to the bucket, point the environment at them, then create the pool
# chartmogul_api (UI: Admin → Pools) and the two connections (Secrets Manager, or Admin → Connections).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
AIRFLOW_VERSION=${AIRFLOW_VERSION:-3.1.8}
EXTRAS=${MOGULFLOW_EXTRAS:-postgres}
OUT=${MWAA_OUT:-$ROOT/deploy/mwaa/out}
BIN=$ROOT/.venv/bin

make --no-print-directory dist >/dev/null
WHEEL=$(ls dist/mogulflow-*-py3-none-any.whl)
NAME=$(basename "$WHEEL")
rm -rf "$OUT" && mkdir -p "$OUT/plugins" "$OUT/dags"
cp "$WHEEL" "$OUT/plugins/"
"$BIN/mogulflow" dags --into "$OUT/dags" >/dev/null

printf 'apache-airflow==%s\nmogulflow[%s] @ file://%s\n' "$AIRFLOW_VERSION" "$EXTRAS" "$OUT/plugins/$NAME" \
    > "$OUT/constraints.in"
"$BIN/uv" pip compile --quiet --no-header --no-annotate --python-version 3.11 "$OUT/constraints.in" \
    | grep -v '^mogulflow' > "$OUT/plugins/constraints.txt"
rm "$OUT/constraints.in"

sed -e "s/@WHEEL@/$NAME/" -e "s/@EXTRAS@/$EXTRAS/" deploy/mwaa/requirements.txt.in > "$OUT/requirements.txt"
(cd "$OUT/plugins" && "$BIN/python" -m zipfile -c ../plugins.zip "$NAME" constraints.txt)
rm -rf "$OUT/plugins"
echo "MWAA files for Airflow $AIRFLOW_VERSION in $OUT: dags/, plugins.zip, requirements.txt"
