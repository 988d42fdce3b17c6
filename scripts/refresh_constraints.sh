#!/usr/bin/env bash
# Refresh constraints.txt deliberately: resolve the newest versions the extras allow in a throw-away venv,
# then pin exactly what was installed. Run it, run the tests, commit constraints.txt with the result.
#   bash scripts/refresh_constraints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q "torch==2.13.0" -e ".[cpu,dev,rtx]"
"$tmp/venv/bin/python" -m pip install -q --no-deps "tritonclient==2.73.0"
"$tmp/venv/bin/python" -m pip install -q "grpcio>=1.60" python-rapidjson "geventhttpclient>=2.3.3" "greenlet<3.4" "urllib3>=2.0.7"
{
  echo "# Every package setup.sh installs into .venv, pinned to the versions the tests passed with."
  echo "# Made by scripts/refresh_constraints.sh on $(date -u +%Y-%m-%d) ($(uname -m), Python $("$tmp/venv/bin/python" -c 'import sys; print(sys.version.split()[0])'))."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e '
} > constraints.txt
echo "constraints.txt refreshed: $(grep -c '==' constraints.txt) pins"
