# Sourced by scripts/sanitize.sh and scripts/tsan.sh: configures (once) and
# builds a side build folder with extra meson options; exits with a message
# when either fails.
#   side_build NAME DIR OPTION...
side_build() {
	local name=$1 dir=$2
	shift 2
	if [[ ! -f $dir/build.ninja ]]; then
		if ! meson setup "$dir" -Dwerror=true -Db_lundef=false "$@" >"$dir.setup.log" 2>&1; then
			cat "$dir.setup.log"
			echo "$name: meson setup failed"
			exit 1
		fi
		rm -f "$dir.setup.log"
	fi
	if ! ninja -C "$dir" >/dev/null; then
		ninja -C "$dir" | tail -40
		echo "$name: the build failed"
		exit 1
	fi
}
