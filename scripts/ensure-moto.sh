#!/usr/bin/env bash
# Installs (once) moto's S3 server — a second, independent S3 implementation the store's
# contract suite runs against besides MinIO — in its own virtualenv, from PyPI, pinned:
#
#   scripts/ensure-moto.sh            prints the path of the moto_server executable
#
# The venv lives in $cache/moto-<version> (cache: $ETCD_RECOVER_CACHE, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover) and is reused while it is complete (a stamp
# written last). Concurrent callers wait on a lock, so one installs and the others reuse it.
#
# Environment:
#   MOTO_SERVER   use an existing moto_server executable instead
#   PYTHON        the Python 3 (>= 3.9) to build the venv with; default python3
# A failure is fatal: the suite that needs moto fails loudly, it is never skipped.
set -euo pipefail
version=5.2.5

if [ -n "${MOTO_SERVER:-}" ]; then
  [ -x "$MOTO_SERVER" ] || { echo "ensure-moto: MOTO_SERVER=$MOTO_SERVER is not executable" >&2; exit 1; }
  echo "$MOTO_SERVER"; exit 0
fi
cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
venv="$cache/moto-$version"
stamp="$venv/.etcd-recover-complete"
# Fast path: nothing to do (no Python started, no lock taken).
if [ -f "$stamp" ] && [ -x "$venv/bin/moto_server" ]; then echo "$venv/bin/moto_server"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/moto-$version.lock"
flock 9
if [ ! -f "$stamp" ] || [ ! -x "$venv/bin/moto_server" ]; then
  py=${PYTHON:-python3}
  command -v "$py" >/dev/null || { echo "ensure-moto: $py not found (moto needs Python >= 3.9 with the venv module)" >&2; exit 1; }
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || { echo "ensure-moto: $("$py" --version 2>&1) is too old (moto $version needs >= 3.9)" >&2; exit 1; }
  echo "ensure-moto: installing moto[server]==$version in $venv (first time only)..." >&2
  start=$SECONDS
  # A venv is not relocatable (its scripts name its own path), so it is built in place; the stamp
  # marks it complete, and a half-built one from an interrupted run is removed first.
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2 || { echo "ensure-moto: cannot create a venv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "moto[server]==$version" >&2
  "$venv/bin/python" -c "import moto, sys; sys.exit(0 if moto.__version__ == '$version' else 1)"
  [ -x "$venv/bin/moto_server" ] || { echo "ensure-moto: moto_server missing from $venv/bin" >&2; exit 1; }
  echo "$version" > "$stamp"
  echo "ensure-moto: installed moto $version in $((SECONDS - start)) s" >&2
fi
echo "$venv/bin/moto_server"
