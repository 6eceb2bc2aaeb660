# The libFuzzer build of fuzz-source.c (see there), with ASan + UBSan.
# The top Makefile's targets call this with the configured Dovecot flags:
#   make fuzz [FUZZ_SECONDS=60]   replay corpus/ and regressions/, then
#                                 fuzz for FUZZ_SECONDS (0: replay only)
#   make fuzz FUZZ_SEED=1 FUZZ_RUNS=150000
#                                 a fixed seed and number of inputs: the
#                                 same inputs every time (what CI runs;
#                                 FUZZ_SECONDS still bounds it)
#   make fuzz-replay              replay only
# New inputs go to build/corpus (not the tree); a crash stops the run
# and is left as build/crash-* (keep it: copy it to regressions/).
CC = clang
FUZZ_SECONDS = 60
FUZZ_SEED = 0
FUZZ_RUNS = -1
# a run that covers less stops early for every input (it once saw 67
# edges: every greeting timed out at once); 10 s reach about 800
FUZZ_MIN_COV = 400
FUZZ_FLAGS = -detect_leaks=0 -timeout=10 -rss_limit_mb=1536 -max_len=65536
DOVECOT_CPPFLAGS = -I/usr/include/dovecot
DOVECOT_LIBS = -ldovecot-storage -ldovecot-compression -L/usr/lib/dovecot -ldovecot -lpcre2-8
DOVECOT_LIBDIR = /usr/lib/dovecot
# -D options from the configured CFLAGS (e.g. -DMIGRATE_HAVE_SYNCFS)
DEFS =

B = build
# Dovecot's own process-lifetime allocations aren't leaks of one input;
# memory per input is bounded by -rss_limit_mb instead
RUN = ASAN_OPTIONS=detect_leaks=0:$${ASAN_OPTIONS:-} UBSAN_OPTIONS=print_stacktrace=1:$${UBSAN_OPTIONS:-} $(B)/fuzz-source
SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined
CFLAGS_FUZZ = -g -O1 -fno-omit-frame-pointer $(SAN) -fsanitize=fuzzer-no-link \
	-Wall -Wno-unused-function -Wno-duplicate-decl-specifier -DHAVE_CONFIG_H $(DEFS) -I../plugin $(DOVECOT_CPPFLAGS)

# the sources fuzz-*-part.c and fuzz-source.c compile in themselves
INCLUDED = migrate-importer-source.c migrate-source-conn.c
# and the 2.4 settings declarations (no parser in them; 2.4 headers only)
EXCLUDED = $(INCLUDED) migrate-settings-decl.c
PLUGIN_SRCS = $(filter-out $(addprefix ../plugin/,$(EXCLUDED)),$(wildcard ../plugin/*.c))
OBJS = $(B)/fuzz-source.o $(B)/fuzz-importer-part.o
# an archive: the linker takes only the members the target needs (as the
# unit tests do with libmigrate.la), so e.g. migrate-report.c's doveadm
# printing isn't linked
PLUGIN_OBJS = $(patsubst ../plugin/%.c,$(B)/plugin-%.o,$(PLUGIN_SRCS))

all: $(B)/fuzz-source

$(B)/plugin-%.o: ../plugin/%.c ../plugin/*.h
	@mkdir -p $(B)
	$(CC) $(CFLAGS_FUZZ) -c $< -o $@
$(B)/%.o: %.c fuzz-parts.h ../plugin/*.c ../plugin/*.h
	@mkdir -p $(B)
	$(CC) $(CFLAGS_FUZZ) -c $< -o $@
$(B)/libplugin.a: $(PLUGIN_OBJS)
	rm -f $@
	ar rcs $@ $(PLUGIN_OBJS)
$(B)/fuzz-source: $(OBJS) $(B)/libplugin.a
	$(CC) $(SAN) -fsanitize=fuzzer $(OBJS) $(B)/libplugin.a -o $@ $(DOVECOT_LIBS) \
		-Wl,-rpath,$(DOVECOT_LIBDIR)

# every kept input once: a fixed crash must stay fixed
replay: $(B)/fuzz-source
	@set -e; n=0; for f in corpus/* regressions/*; do \
		[ -f "$$f" ] || continue; n=$$((n + 1)); \
		$(RUN) $(FUZZ_FLAGS) "$$f" >$(B)/replay.log 2>&1 || \
			{ cat $(B)/replay.log; echo "FAIL: fuzz replay $$f"; exit 1; }; \
	done; echo "PASS: fuzz replay of $$n kept inputs"

run: replay
	@mkdir -p $(B)/corpus
	@rm -f $(B)/crash-* $(B)/oom-* $(B)/timeout-* $(B)/leak-*
	@if [ "$(FUZZ_SECONDS)" -gt 0 ]; then \
		$(RUN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
			-seed=$(FUZZ_SEED) -runs=$(FUZZ_RUNS) \
			-print_final_stats=1 -dict=imap.dict \
			-artifact_prefix=$(B)/ $(B)/corpus corpus regressions \
			>$(B)/fuzz.log 2>&1; rc=$$?; \
		grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+.*DONE)' $(B)/fuzz.log | sed 's/^/# /'; \
		cov=$$(sed -n 's/.*DONE *cov: \([0-9]*\).*/\1/p' $(B)/fuzz.log | tail -n 1); \
		if [ $$rc = 0 ] && [ "$${cov:-0}" -lt $(FUZZ_MIN_COV) ]; then \
			echo "FAIL: fuzz: only $${cov:-0} edges covered (under $(FUZZ_MIN_COV)): the target stops early for every input"; exit 1; fi; \
		if [ $$rc = 0 ]; then echo "PASS: fuzz, seed $(FUZZ_SEED), runs $(FUZZ_RUNS), at most $(FUZZ_SECONDS)s ($$cov edges)"; else \
			grep -E -A30 'ERROR|==ERROR|runtime error|Test unit written' $(B)/fuzz.log | head -n 60; \
			echo "FAIL: fuzz: crash (input left in $(B)/crash-* or $(B)/timeout-*/oom-*)"; exit 1; fi; \
	fi

clean:
	rm -rf $(B)

.PHONY: all replay run clean
