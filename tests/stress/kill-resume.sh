#!/usr/bin/env bash
# timeout: 3000
# kill -9 / resume stress, by hand (not in CI: minutes per format, and it
# looks for races that show once in dozens of kills). Each of N fresh users
# migrates the spine corpus, paced; the run is SIGKILLed at a random point,
# resumed at once, and the destination compared with the source. A failing
# user's home (as the kill left it and after the resume), both outputs and
# the dumps are kept under $STRESS_SAVE.
#
#   STRESS_FORMAT=maildir STRESS_ITER=80 bash tests/stress/kill-resume.sh
#
# Environment: STRESS_FORMAT (sdbox, mdbox, maildir; default sdbox),
# STRESS_ITER (default 80), STRESS_SAVE (default /tmp/dm-stress-fail).
# On Dovecot 2.4: copy it to tests/integration/test-zz-stress.sh and run
# TRIXIE_SCRIPTS=test-zz-stress tests/leg-trixie.sh test-zz-stress.
. "$(dirname "$0")/../lib/harness.sh"

ITER=${STRESS_ITER:-80}
SAVE=${STRESS_SAVE:-/tmp/dm-stress-fail}
src_start || die "source server did not start"
dst_start --format "${STRESS_FORMAT:-sdbox}" || die "destination server did not start"
src_seed alice --seed 11 --big-mb 3 >"$T/seed.out" 2>&1 || die "seeding failed"
src_dump alice "$T/src.json" || die "source dump failed"

now() { date +%s.%N; }
pace=(-o plugin/migrate_max_messages_per_second=150)
dst_add_user ref userdb_migrate_source_user=alice
t0=$(now)
dst_doveadm "${pace[@]}" migrate run -u ref >/dev/null 2>&1
duration=$(python3 -c "print('%.3f' % ($(now) - $t0))")
info "paced run: ${duration}s"
for i in $(seq 1 "$ITER"); do
	user=s$i
	dst_add_user "$user" userdb_migrate_source_user=alice
	secs=$(python3 -c "import random; print('%.3f' % max(0.05, $duration * random.uniform(0.05, 0.8)))")
	dst_doveadm_killed "$secs" "${pace[@]}" migrate run -u "$user" >"$T/k$i.out" 2>&1
	files=$(dst_mail_files "$user" | wc -l)
	cp -a "$(dst_home "$user")" "$T/h$i" 2>/dev/null
	dst_doveadm migrate run -u "$user" >"$T/r$i.out" 2>&1
	if dst_equals "kill after ${secs}s ($files files), resume: destination == source" \
		"$user" "$T/src.json"; then
		rm -rf "$T/h$i"
		continue
	fi
	d="$SAVE/$(date +%s)-$i"
	mkdir -p "$d"
	cp -a "$T/h$i" "$d/afterkill"
	cp -a "$(dst_home "$user")" "$d/final"
	cp "$T/k$i.out" "$T/r$i.out" "$T/src.json" "$T/dst-$user.json" "$d/"
	info "kept in $d"
done
harness_done
