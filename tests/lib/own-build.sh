# shellcheck shell=bash
# The tests test the tree they built. Sourced by harness.sh.
#
# doveadm auto-loads every plugin in Dovecot's doveadm module dir, and when
# a copy of ours is installed there (make install, the .deb) its commands
# win over the build the harness loads with -o mail_plugin_dir=: the suite
# would silently test the installed code. So a test re-executes itself in
# a private mount namespace (unshare -m, propagation private) in which the
# module dir is a tmpfs holding every installed doveadm plugin except ours.
# Every process the test starts (doveadm, the Dovecot instances and their
# doveadm-server workers) inherits that view; the real module dir is never
# written, and the view vanishes with the test's last process.
#
# Where no namespace can be made (no CAP_SYS_ADMIN; a chroot whose root is
# not a mount point, so propagation can't be made private), the test
# refuses to run when an installed copy differs from the build.
#
# Knobs: HARNESS_OWN_BUILD=0 runs whatever doveadm loads (a demo against
# an installed package); DM_DOVEADM_MODULE_DIR overrides the module dir.

own_build_module_dir() {
	local d
	d=$(sed -n 's/^dovecot_moduledir=//p' /usr/lib/dovecot/dovecot-config 2>/dev/null)
	echo "${d:-/usr/lib/dovecot/modules}/doveadm"
}
DM_DOVEADM_MODULE_DIR=${DM_DOVEADM_MODULE_DIR:-$(own_build_module_dir)}

# own_build_installed: the installed copies of the plugin, one a line
own_build_installed() {
	local f
	for f in "$DM_DOVEADM_MODULE_DIR"/*doveadm_migrate*; do
		[ -e "$f" ] && echo "$f"
	done
	return 0
}

# plugin_build_id FILE: the build id embedded in a built plugin
plugin_build_id() {
	grep -ao 'dm-build-[0-9a-z]*' "$1" 2>/dev/null | head -n 1
}

own_build_refuse_differing() {
	local f so="$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so"
	while read -r f; do
		[ -n "$f" ] || continue
		cmp -s "$f" "$so" && continue
		echo "FAIL: $TEST_NAME: $f is installed and differs from the build in $PLUGIN_DIR: doveadm would run the installed copy's commands, not the tree's, and no private mount namespace could hide it ($1). Uninstall it, or run the tests as root with CAP_SYS_ADMIN (in a chroot: make its root a mount point)"
		exit 1
	done < <(own_build_installed)
}

# The view: a tmpfs over the module dir with copies of everything but ours.
# Refuses (as above) when it can't be made.
own_build_view() {
	local dir=$DM_DOVEADM_MODULE_DIR tmp f
	[ -d "$dir" ] || return 0
	tmp=$(mktemp -d /tmp/dm-modview.XXXXXX) || exit 1
	for f in "$dir"/*; do
		[ -e "$f" ] || continue
		case "${f##*/}" in *doveadm_migrate*) continue ;; esac
		cp -a "$f" "$tmp/" || { rm -rf "$tmp"; exit 1; }
	done
	if ! mount -t tmpfs -o mode=755,size=64m dm-test-modules "$dir" 2>/dev/null; then
		rm -rf "$tmp"
		own_build_refuse_differing "mounting a tmpfs on $dir failed"
		return 0
	fi
	# never let the view propagate to the system: the mount must be private
	if awk -v d="$dir" '$5 == d && / shared:/ { bad = 1 } END { exit !bad }' \
		/proc/self/mountinfo 2>/dev/null; then
		umount "$dir"
		rm -rf "$tmp"
		echo "FAIL: $TEST_NAME: the module-dir view on $dir is a shared mount; unmounted it"
		exit 1
	fi
	cp -a "$tmp"/. "$dir"/
	rm -rf "$tmp"
}

# own_build_enter "$@" (the test script's arguments): re-exec the test in
# its own mount namespace, once; inside it, make the view.
own_build_enter() {
	[ "${HARNESS_OWN_BUILD:-1}" = 0 ] && return 0
	# nothing built: dst_doveadm warns and runs doveadm as it is
	[ -f "$PLUGIN_DIR/lib20_doveadm_migrate_plugin.so" ] || return 0
	if [ "${HARNESS_OWN_BUILD_PID:-}" = "$$" ]; then
		own_build_view
		return 0
	fi
	# $0 must still name the script (a script that cd'd before sourcing
	# us with a relative $0 can't be re-executed)
	if [ -f "$0" ] && unshare -m --propagation private true 2>/dev/null; then
		exec env HARNESS_OWN_BUILD_PID=$$ unshare -m --propagation private -- bash "$0" "$@"
	fi
	own_build_refuse_differing "unshare -m --propagation private failed"
}
