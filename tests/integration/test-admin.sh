#!/usr/bin/env bash
# What a new admin hits (issue 15): the shipped conf.d examples work when
# uncommented, misspelled settings are named, -m that matches nothing
# fails, a source that hides NAMESPACE, status of UIDs on Maildir, and the
# smaller surprises (usage text, empty headers, error wording).
# timeout: 300
. "$(dirname "$0")/../lib/harness.sh"

plugin_built || info "the plugin is not built: the migrate steps will fail"

src_start || die "source server did not start"
dst_start --format maildir || die "destination server did not start"
src_seed alice --seed 15 --limit 40 >"$T/seed.out" 2>&1 ||
	die "seeding failed: $(tail -n 3 "$T/seed.out")"

# ------------------------------------------------------------ item 1
# Every "#migrate_x = value" example of conf.d's plugin {} uncommented, in a
# plugin {} of its own after the harness's; only what names this machine
# (host, port, TLS, password, state, rule files, program paths) is
# overridden on the command line.
CONFD="$TOP/conf.d/90-migrate.conf"
sed -n '/^plugin {/,/^}/p' "$CONFD" |
	sed -n 's/^[[:space:]]*#\(migrate_[a-z0-9_]* =.*\)$/  \1/p' >"$T/examples"
{
	echo "plugin {"
	cat "$T/examples"
	echo "}"
} >"$T/examples.conf"
n_examples=$(wc -l <"$T/examples")
info "conf.d: $n_examples commented plugin examples"
[ "$n_examples" -ge 40 ] && pass "conf.d has its examples" ||
	fail "conf.d has its examples" "only $n_examples found"
# conf_doveadm CONF ARGS...: doveadm with the plugin and config CONF
conf_doveadm() {
	local conf=$1
	shift
	dst_doveadm_argv
	DST_DOVEADM[2]=$conf
	bounded "$DOVEADM_TIMEOUT" "${DST_DOVEADM[@]}" "$@"
}
# a config that is the destination's plus FILE's lines
conf_plus() {
	printf '!include %s\n' "$DST_DIR/dovecot.conf"
	cat "$1"
}
conf_plus "$T/examples.conf" >"$T/dst-examples.conf"
ex_doveadm() { conf_doveadm "$T/dst-examples.conf" "$@"; }
here=(-o plugin/migrate_source_host=127.0.0.1
	-o plugin/migrate_source_port="$SRC_PORT"
	-o plugin/migrate_source_ssl=no
	-o plugin/migrate_source_password_file="$T/srcpw/%u"
	-o plugin/migrate_source_oauth2_token_command=
	-o plugin/migrate_state_dict=
	-o plugin/migrate_folder_map=)
assert_exit NAME="conf.d examples uncommented: plan exits 0" 0 \
	ex_doveadm "${here[@]}" migrate plan -u alice
if grep -Eiq 'error|warning|missing units' "$LAST_ERR"; then
	fail "conf.d examples uncommented: no error or warning" "$(head -c 400 "$LAST_ERR")"
else
	pass "conf.d examples uncommented: no error or warning"
fi
assert_exit NAME="conf.d examples uncommented: run exits 0" 0 \
	ex_doveadm "${here[@]}" migrate run -u alice
assert_exit NAME="conf.d examples uncommented: status exits 0" 0 \
	ex_doveadm "${here[@]}" migrate status -u alice
# the values the man page and conf.d show, one by one
for set in migrate_source_timeout=120 migrate_lock_timeout=600 \
	migrate_backoff_max=300 migrate_throttle_max_wait=3600 \
	"migrate_source_timeout=2 mins" migrate_since=6months \
	"migrate_since=90 days" migrate_before=2y migrate_since=6m; do
	assert_exit NAME="plan with $set exits 0" 0 \
		dst_doveadm -o "plugin/$set" migrate plan -u alice
done
assert_exit NAME="an interval with a bad unit is still 78" 78 \
	dst_doveadm -o plugin/migrate_lock_timeout=10parsecs migrate plan -u alice
one_error "the bad interval names its setting" 'migrate_lock_timeout=10parsecs'
assert_exit NAME="migrate_since=6min is refused (m is months)" 78 \
	dst_doveadm -o plugin/migrate_since=6min migrate plan -u alice

# ------------------------------------------------------------ item 3
# A misspelled setting, wherever it is set: named with the nearest known
# name; run refuses (78) before it connects, other commands warn.
typo_check() { # typo_check WHERE doveadm-function [args...] (before "migrate")
	local where=$1
	shift
	assert_exit NAME="typo in $where: run exits 78" 78 "$@" migrate run -u "$typo_user"
	one_error "typo in $where: one error naming it and the nearest name" \
		'Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)'
	assert_exit NAME="typo in $where: status exits 0" 0 "$@" migrate status -u "$typo_user"
	assert_match "typo in $where: status warns" \
		'Warning: .*Unknown setting migrate_source_hots \(did you mean migrate_source_host\?\)' \
		"$(cat "$LAST_ERR")"
	assert_exit NAME="typo in $where: plan exits 0 and warns" 0 "$@" migrate plan -u "$typo_user"
	assert_match "typo in $where: plan warns" 'Warning: .*migrate_source_hots' "$(cat "$LAST_ERR")"
}
typo_user=alice
printf 'plugin {\n  migrate_source_hots = 192.0.2.1\n}\n' >"$T/typo.conf"
conf_plus "$T/typo.conf" >"$T/dst-typo.conf"
typo_conf_doveadm() { conf_doveadm "$T/dst-typo.conf" "$@"; }
typo_check "plugin {}" typo_conf_doveadm
typo_check "doveadm -o" dst_doveadm -o plugin/migrate_source_hots=192.0.2.1
dst_add_user carol userdb_migrate_source_user=alice userdb_migrate_source_hots=192.0.2.1
typo_user=carol
typo_check "a userdb field" dst_doveadm
# the typo's intended value would have gone unnoticed: nothing was imported
if [ -z "$(dst_mail_files carol)" ]; then
	pass "typo: carol's refused run imported nothing"
else
	fail "typo: carol's refused run imported nothing" "mail files exist"
fi
assert_exit NAME="several typos are all named" 78 dst_doveadm \
	-o plugin/migrate_lock_timout=5 -o plugin/migrate_frobnicate=1 \
	migrate run -u alice
one_error "several typos: one error line names both" \
	'migrate_lock_timout \(did you mean migrate_lock_timeout\?\).*migrate_frobnicate|migrate_frobnicate.*migrate_lock_timout'

harness_done
