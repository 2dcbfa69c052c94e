#!/usr/bin/env bash
# Set up Hopso on a Debian machine: system packages (when root), the Python venv, browser libraries.
#   bash scripts/setup.sh          what the server needs
#   bash scripts/setup.sh --test   plus what the test suite needs (chromium, nginx, test tools)
#   bash scripts/setup.sh --bench  plus what the benchmarks compare against (Janus, for bench/sfu.py)
# Python packages come from the lock only (requirements/lock*.txt, every file's hash checked;
# refreshed by scripts/lock.sh); the browser libraries from web_client/package-lock.json (npm ci).
# The Debian packages and the versions seen installed: docs/operations.md ("Reproducible installs").
# With HOPSO_SETUP_APT_STATUS=FILE (scripts/test.sh), the packages only running things needs
# (fonts, ffmpeg, the test tools: all but Python, gcc and npm) are installed in the background
# while pip and npm run, and apt's exit status is written to FILE when it is done.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0 want_bench=0
[ "${1:-}" = "--test" ] && want_tests=1
[ "${1:-}" = "--bench" ] && want_tests=1 && want_bench=1

python_bin=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python_bin=$(command -v "$candidate"); break
  fi
done

missing=()  # needed to build the venv and the browser libraries
later=()    # needed only to run the server or the tests
[ -n "$python_bin" ] || missing+=(python3.11 python3.11-venv)
[ -n "$python_bin" ] && ! "$python_bin" -c 'import venv, ensurepip' 2>/dev/null && missing+=(python3.11-venv)
command -v npm >/dev/null || missing+=(nodejs npm)
# A C compiler and Python's headers: pip builds media's C fan-out loop (media/fanout_build.py).
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
if [ -n "$python_bin" ]; then
  include=$("$python_bin" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$include/Python.h" ] || missing+=(python3.11-dev)
else
  missing+=(python3.11-dev)
fi
# Noto Serif/Sans: Vietnamese-capable serif for minutes and other generated PDFs.
[ -f /usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf ] || later+=(fonts-noto-core)
# ffmpeg/ffprobe: the composite video of a recording (server/archive/composite.py), and the
# tests' checks of recorded and composed files.
{ command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; } || later+=(ffmpeg)
if [ "$want_tests" = 1 ]; then
  [ -x /usr/bin/chromium ] || later+=(chromium)
  # LibreOffice without a GUI, for the real Office → PDF conversion tests: writer (.docx .odt
  # .doc), calc (.xlsx .ods .xls), impress (.pptx .odp .ppt): every kind validation accepts.
  # Checked by component, so an existing full (GUI) LibreOffice is kept as it is.
  lo=/usr/lib/libreoffice/program
  [ -e $lo/libswlo.so ] || later+=(libreoffice-writer-nogui)
  [ -e $lo/libsclo.so ] || later+=(libreoffice-calc-nogui)
  [ -e $lo/libslideshowlo.so ] || later+=(libreoffice-impress-nogui)
  # nginx: tests/deploy checks the rendered reverse-proxy configuration with `nginx -t`.
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || later+=(nginx)
  # iptables: the cascade rehearsal's WAN links lose packets (testkit/wan.py, loss_rule).
  [ -x /usr/sbin/iptables-legacy ] || later+=(iptables)
  # pg_dump/pg_restore: tests/server/test_backup.py backs up and restores PostgreSQL.
  command -v pg_dump >/dev/null || later+=(postgresql-client)
  # SoftHSM2: a real PKCS#11 token for the signed-minutes tests (tests/documents/test_signing_token.py).
  [ -e /usr/lib/softhsm/libsofthsm2.so ] || later+=(softhsm2)
  # valgrind: bench/record.py's count of the recording tap's instructions (bench/record_count.py),
  # tested in tests/bench/test_record_count.py (callgrind and its client-request header).
  { command -v valgrind >/dev/null && [ -f /usr/include/valgrind/callgrind.h ]; } || later+=(valgrind)
fi
if [ "$want_bench" = 1 ]; then
  command -v janus >/dev/null || [ -x /usr/bin/janus ] || later+=(janus)
fi
apt_install() {  # the Debian packages "$@", in one apt-get call
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || return
  # --force-unsafe-io: dpkg does not fsync every file it unpacks (Debian's own option, safe
  # but for a power cut during the install; chromium and LibreOffice are ~20,000 files).
  apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-unsafe-io \
    "$@" >/dev/null || return
  # Installed for its syntax check only: where Debian started the service, stop it again.
  if [[ " $* " == *" nginx "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
}
all=("${missing[@]}" "${later[@]}")
if [ ${#all[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
  echo "setup: please install these Debian packages first: ${all[*]}" >&2; exit 1
fi
apt_status=${HOPSO_SETUP_APT_STATUS:-}
if [ -n "$apt_status" ]; then
  rm -f "$apt_status"
  [ ${#later[@]} -gt 0 ] && [ ${#missing[@]} -eq 0 ] || echo 0 >"$apt_status"
fi
if [ ! -e "${apt_status:-/}" ]; then  # in the background, beside pip and npm ci
  echo "setup: installing ${later[*]} (in the background)"
  ( status=0; apt_install "${later[@]}" || status=$?
    echo "$status" >"$apt_status.part" && mv "$apt_status.part" "$apt_status" ) &
elif [ ${#all[@]} -gt 0 ]; then
  echo "setup: installing ${all[*]}"
  apt_install "${all[@]}"
  [ -n "$python_bin" ] || python_bin=$(command -v python3.11)
fi

if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
lock=requirements/lock.txt
[ "$want_tests" = 1 ] && lock=requirements/lock-test.txt
# Exactly the locked releases, each file checked against its hash (pip itself and the build
# requirements are in the lock too); then the project, built from those without fetching.
.venv/bin/python -m pip install -q --require-hashes -r "$lock"
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# A dependency added to pyproject.toml but not to the lock stops here, not at an import.
.venv/bin/python -m pip check >/dev/null || {
  .venv/bin/python -m pip check >&2
  echo "setup: the lock misses a requirement: run bash scripts/lock.sh (docs/operations.md)" >&2
  exit 1
}
(cd web_client && npm ci --no-audit --no-fund --loglevel=error)
echo "setup: done"
