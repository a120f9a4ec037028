#!/usr/bin/env bash
# pacsweb's two entry points for a fresh machine:
#   ./pacsweb.sh run    install what the server needs, then run the web server and the DICOM receiver
#   ./pacsweb.sh test   install what the tests need, then run the linters and the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV=.venv

need_python() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "pacsweb needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2
    exit 1
  }
}

# Install a requirements file into the project's virtualenv, once per content of that file.
install_requirements() {
  local file=$1 stamp="$VENV/.installed-$1"
  need_python
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if [ ! -f "$stamp" ] || ! cmp -s "$file" "$stamp"; then
    echo "Installing Python packages from $file ..."
    "$VENV/bin/pip" install --disable-pip-version-check -q -r "$file"
    cp "$file" "$stamp"
  fi
}

# Debian packages the tests drive for real: dcmtk's storescu/findscu/echoscu and Chromium.
install_test_tools() {
  local missing=()
  command -v storescu >/dev/null || missing+=(dcmtk)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "The tests need these Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "Installing ${missing[*]} from Debian's packages ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

case "${1:-}" in
  run)
    shift
    install_requirements requirements.txt
    exec "$VENV/bin/python" manage.py serve "$@"
    ;;
  test)
    shift
    install_requirements requirements-test.txt
    install_test_tools
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    # One test process per core (pytest-xdist); extra arguments go to pytest, e.g. -n 0 -k zip.
    exec "$VENV/bin/python" -m pytest -n auto "$@"
    ;;
  *)
    echo "usage: ./pacsweb.sh run | ./pacsweb.sh test [pytest arguments]" >&2
    exit 2
    ;;
esac
