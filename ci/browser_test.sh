#!/usr/bin/env bash
# The browser test of the notebook widgets: installs headless Chromium, its driver and selenium
# (each only when missing), then opens ci/browser/widgets.ipynb in JupyterLab and drives every
# explorer of llmtap.widgets. Run from anywhere with the project's virtual environment active.
# Safe to run again: every install step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate            # the project's venv, if the caller did not activate one
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "browser_test: installing chromium and chromium-driver"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

if ! python -c "import selenium" 2>/dev/null; then
    echo "browser_test: installing selenium"
    python -m pip install -q selenium
fi

exec python ci/browser/test_browser.py "$@"
