#!/usr/bin/env bash
# Installs the build into a temporary DESTDIR (meson install) and checks
# the tree a packager gets: binaries, libraries (shared and static),
# headers, hsclient.pc (a program builds against libhsclient.a with it),
# systemd units, sysusers/tmpfiles, man pages, bash completion, the sample
# configuration (every key the daemon knows, each default accepted by
# --check-config), the Python module when it is built, and no examples.
#   check-install.sh BUILD_DIR SOURCE_DIR PREFIX BINDIR SBINDIR LIBDIR
#                    INCLUDEDIR MANDIR SYSCONFDIR DATADIR PYTHON_DIR|none
#                    SANITIZE(none|...)
set -euo pipefail
build=$1 src=$2 prefix=$3
abs() { [[ $1 == /* ]] && echo "$1" || echo "$prefix/$1"; }
bindir=$(abs "$4") sbindir=$(abs "$5") libdir=$(abs "$6") includedir=$(abs "$7")
mandir=$(abs "$8") sysconfdir=$(abs "$9") datadir=$(abs "${10}") pydir=${11} sanitize=${12}

dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --destdir "$dest" --no-rebuild >"$dest.log" 2>&1 ||
	{ cat "$dest.log"; rm -f "$dest.log"; exit 1; }
rm -f "$dest.log"

fails=0
has() { # path under the prefix, what it is
	if [[ ! -e $dest$1 ]]; then
		echo "missing: $1 ($2)"
		fails=$((fails + 1))
	fi
}
has "$sbindir/hsbrokerd" "the daemon"
has "$bindir/hsctl" "the operator's tool"
has "$libdir/libhsclient.so.0" "the shared library"
has "$libdir/libhsclient.a" "the static library"
has "$libdir/pkgconfig/hsclient.pc" "pkg-config file"
has "$includedir/hsbroker/hsbroker.h" "the public header"
has "$prefix/lib/systemd/system/hsbrokerd.service" "unit"
has "$prefix/lib/systemd/system/hsbrokerd.socket" "unit"
has "$prefix/lib/sysusers.d/hsbroker.conf" "sysusers"
has "$prefix/lib/tmpfiles.d/hsbroker.conf" "tmpfiles"
has "$sysconfdir/hsbroker/hsbrokerd.conf" "sample configuration"
has "$datadir/doc/hsbroker/daemon.md" "the units' Documentation="
if command -v scdoc >/dev/null; then
	for page in man8/hsbrokerd.8 man1/hsctl.1 man5/hsbroker.conf.5 man3/libhsclient.3; do
		has "$mandir/$page" "man page"
	done
fi
has "$datadir/bash-completion/completions/hsctl" "bash completion"
if [[ $pydir != none ]]; then
	has "$pydir/hsbroker/__init__.py" "Python module"
	if ! compgen -G "$dest$pydir/hsbroker/_hsbroker*.so" >/dev/null; then
		echo "missing: the Python extension in $pydir/hsbroker"
		fails=$((fails + 1))
	fi
fi
for ex in hs-example-producer hs-example-consumer; do
	if [[ -e $dest$bindir/$ex ]]; then
		echo "installed without -Dexamples=true: $bindir/$ex"
		fails=$((fails + 1))
	fi
done

# The .pc file: Requires.private and Libs.private for a static link.
pc=$dest$libdir/pkgconfig/hsclient.pc
grep -q '^Requires.private: .*libprotobuf-c' "$pc" || { echo "hsclient.pc: no Requires.private: libprotobuf-c"; fails=$((fails + 1)); }
grep -q '^Libs.private: .*-pthread' "$pc" || { echo "hsclient.pc: no Libs.private"; fails=$((fails + 1)); }

# A program built with the installed tree only: libhsclient.a linked in
# (not the .so), with the flags pkg-config gives for a static link. A
# sanitizer build's archive needs its runtime: skipped there.
if [[ $sanitize == none ]] && command -v cc >/dev/null; then
	cat >"$dest/prog.c" <<'C'
#include <hsbroker/hsbroker.h>
#include <stdio.h>
int main(void)
{
	printf("%s\n", hs_strerror(HS_ENOBROKER));
	return 0;
}
C
	pc_args=(--define-variable=prefix="$dest$prefix")
	export PKG_CONFIG_PATH=$dest$libdir/pkgconfig
	libs=$(pkg-config "${pc_args[@]}" --static --libs hsclient | sed 's/-lhsclient//')
	# shellcheck disable=SC2046,SC2086
	if cc -o "$dest/prog" "$dest/prog.c" $(pkg-config "${pc_args[@]}" --cflags hsclient) \
		"$dest$libdir/libhsclient.a" $libs; then
		if ldd "$dest/prog" | grep -q libhsclient; then
			echo "the static link still needs libhsclient.so"
			fails=$((fails + 1))
		elif ! "$dest/prog" | grep -q .; then
			echo "the statically linked program does not run"
			fails=$((fails + 1))
		fi
	else
		echo "a program does not link against libhsclient.a with pkg-config --static"
		fails=$((fails + 1))
	fi
fi

# The sample: every key the daemon's parser knows, and with every default
# uncommented it is a good configuration.
sample=$dest$sysconfdir/hsbroker/hsbrokerd.conf
keys=$(grep -oE 'IS\("[a-z.]+", "[a-z_]+"\)|strcmp\(name, "[a-z_]+"\)' "$src/daemon/main.c" |
	grep -oE '"[a-z_]+"\)$' | tr -d '")' | sort -u)
for k in $keys; do
	if ! grep -qE "^;?$k =" "$sample"; then
		echo "sample configuration: no line for $k"
		fails=$((fails + 1))
	fi
done
sed -n 's/^;\([a-z_]* = ..*\)$/\1/p; /^\[/p' "$sample" | grep -v '^publish\|^subscribe' >"$dest/defaults.conf"
if ! "$dest$sbindir/hsbrokerd" --check-config --config "$dest/defaults.conf"; then
	echo "the sample's defaults, uncommented, are not a good configuration"
	fails=$((fails + 1))
fi
"$dest$sbindir/hsbrokerd" --version | grep -q '^hsbrokerd ' || { echo "installed hsbrokerd -V"; fails=$((fails + 1)); }
LD_LIBRARY_PATH=$dest$libdir "$dest$bindir/hsctl" -V | grep -q '^hsctl ' || { echo "installed hsctl -V"; fails=$((fails + 1)); }

echo "install tree under $prefix: $( ((fails == 0)) && echo good || echo "$fails problems")"
exit $((fails > 0))
