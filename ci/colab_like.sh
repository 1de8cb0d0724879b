#!/usr/bin/env bash
# Runs every chapter notebook as a student's fresh Colab runtime would: only Colab's preinstalled
# packages, llmtap installed by the notebook's own first cell (from a wheel of this checkout).
# Call from the repository root with the project venv active. Options go to ci/colab_like.py
# (--notebooks 02 03, --keep, --reuse-venv PATH, --out DIR, --help); see ci/colab_like.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import nbclient, nbformat, jupyter_client" 2>/dev/null; then
    echo "ci/colab_like.sh: $PY lacks nbclient/nbformat/jupyter_client; activate the project venv (. .venv/bin/activate)" >&2
    exit 2
fi
exec "$PY" ci/colab_like.py "$@"
