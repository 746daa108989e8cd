#!/bin/sh
# Build the calico-routereflector .deb from this source tree into OUTDIR
# (default: dist/ at the top of the tree) and check it with lintian.
#
#   debian/build.sh [--no-lintian] [OUTDIR]
#
# dpkg-buildpackage writes its results into the parent directory of the
# source tree and leaves build debris inside it: so the tree is copied to a
# temporary directory first and only the artifacts (.deb, .buildinfo,
# .changes) are copied into OUTDIR. The work tree is never modified.
# Needs: debhelper dh-python python3-all python3-setuptools
#        pybuild-plugin-pyproject (and lintian unless --no-lintian).
set -eu
# Debian's own toolchain and Python only (not a pyenv or venv python3 on PATH).
PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYENV_VERSION

lintian=yes
if [ "${1:-}" = "--no-lintian" ]; then
	lintian=no
	shift
fi
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/calico-rr-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/src"

tar -C "$top" --exclude-vcs \
	--exclude=./dist --exclude=./build --exclude=./.cache --exclude=./.pytest_cache \
	--exclude=./.hypothesis \
	--exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
	--exclude=./debian/.debhelper --exclude=./debian/calico-routereflector \
	--exclude=./debian/files --exclude='./debian/*.substvars' \
	--exclude='./debian/*.log' --exclude=./debian/debhelper-build-stamp \
	-cf - . | tar -C "$tmp/src" -xf -

(cd "$tmp/src" && dpkg-buildpackage --no-sign -b) >"$tmp/build.log" 2>&1 || {
	tail -n 60 "$tmp/build.log" >&2
	echo "build.sh: dpkg-buildpackage failed (log above)" >&2
	exit 1
}

version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
deb="$tmp/calico-routereflector_${version}_all.deb"
[ -f "$deb" ] || { echo "build.sh: $deb not produced" >&2; exit 1; }
for f in "$tmp"/*.deb "$tmp"/*.buildinfo "$tmp"/*.changes; do
	[ -e "$f" ] && cp "$f" "$out/"
done

if [ "$lintian" = yes ]; then
	command -v lintian >/dev/null || {
		echo "build.sh: lintian not installed (apt-get install lintian, or --no-lintian)" >&2
		exit 1
	}
	# 0 errors and 0 warnings, or the build fails. Overrides (each with the
	# reason) are in debian/calico-routereflector.lintian-overrides.
	lintian --fail-on error,warning --display-info "$out/$(basename "$deb")"
fi
echo "$out/$(basename "$deb")"
