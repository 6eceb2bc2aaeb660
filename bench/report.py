#!/usr/bin/env python3
"""Markdown report for a benchmark run.

  report.py RESULTS.json        # re-render a saved run (bench/results/*.json)

bench.py imports render(meta, rows, anomalies). Values are medians over the
repetitions; ratios are median(migrate) / median(peer), so < 1 means
migrate needed less (time, CPU, memory) than the peer.
"""

import json
import statistics
import sys

TOOL_LABEL = {
    "migrate": "migrate",
    # migrate_parallel_folders=1: what the folder workers bring
    "migrate-1": "migrate, 1 connection",
    "dsync": "dsync imapc",
    "dsync-pf100": "dsync imapc pf=100",
    "mbsync": "mbsync",
    "cp": "limit: cp -r",
    "raw-fetch": "limit: raw FETCH",
}
# tools that write their own Maildir, not a Dovecot destination: measured
# once per repetition, their rows appear under every destination format
OWN_MAILDIR = ("mbsync", "cp")
# cp -r of the source Maildir: the lower bound of a first pass on this disk;
# it has no incremental passes and no network (not measured at RTT > 0)
TOOL_PASSES = {"cp": ["first"]}
LOCAL_ONLY = ("cp",)
# raw-fetch: one connection reads every body (pipelined UID FETCH 1:*
# BODY.PEEK[] per folder) and discards it: the wire limit of a first pass.
# It writes nothing; its counts are what it read
READ_ONLY = ("raw-fetch",)
TOOL_PASSES["raw-fetch"] = ["first"]
# measured once per repetition, rows under every destination format
FORMAT_FREE = OWN_MAILDIR + READ_ONLY
PASSES = ["first", "nochange", "plus1"]
PASS_LABEL = {"first": "first", "nochange": "no-change", "plus1": "+1 % new"}


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float) and x >= 100:
        return "%.0f" % x
    return ("%%.%df" % digits) % x


def ratio(a, b, floor=0.0):
    """a/b; "–" when b is missing or below `floor` (CPU times from
    /usr/bin/time have 10 ms resolution: ratios to ~0 are noise)."""
    if a is None or b is None or b == 0 or b < floor:
        return "–"
    return "%.2f" % (a / b)


def summarize(rows):
    """{(scenario, dest_format, tool, pass): stats}; the rows of the
    FORMAT_FREE tools are under the first destination format."""
    groups = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["dest_format"], r["tool"], r["pass"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = {
            "n": len(rs),
            "ok": sum(1 for r in rs if r.get("ok")),
            "wall": med(r.get("wall") for r in rs if r.get("ok")) if any(r.get("ok") for r in rs)
                    else med(r.get("wall") for r in rs),
            "cpu": med(r.get("cpu") for r in rs if r.get("ok")),
            "rss": med((r.get("rss_kb") or 0) / 1024 for r in rs if r.get("ok")),
            "src_cpu": med(r.get("src_cpu") for r in rs if r.get("ok")),
            "dest_bytes": med(r.get("dest_bytes") for r in rs if r.get("ok")),
            "msgs": sorted({r.get("msgs") for r in rs}, key=lambda x: (x is None, x)),
            "expected": rs[0]["msgs_expected"],
            "bytes_read": med(r.get("bytes_read") for r in rs if r.get("ok")),
            "folders": sorted({r.get("folders") for r in rs}, key=lambda x: (x is None, x)),
            "folders_expected": rs[0].get("folders_expected"),
        }
    return out


def render(meta, rows, anomalies):
    s = summarize(rows)
    formats = meta["formats"]
    tools = meta["tools"]
    first_fmt = formats[0]
    L = []
    L.append("# dovecot-migrate benchmark — RTT %d ms%s" % (
        meta["rtt_ms"], " (quick)" if meta.get("quick") else ""))
    L.append("")
    L.append("- date: %s; total time of this RTT: %.1f min" % (meta["date"], meta["seconds"] / 60))
    L.append("- command: `%s`" % meta["command"])
    L.append("- host: %s; load average at start %s, at end %s (other work on the machine adds noise)"
             % (meta["host"], meta.get("loadavg", {}).get("start", "?"),
                meta.get("loadavg", {}).get("end", "?")))
    v = meta["versions"]
    L.append("- versions: Dovecot %s; %s; plugin %s (.so sha256 %s…)" % (
        v["dovecot"], v["mbsync"], v["plugin"], v.get("plugin_sha256", "?")))
    L.append("- network: %s" % ("latency proxy on 127.0.0.1, %d ms RTT (%.1f ms each direction)"
                                % (meta["rtt_ms"], meta["rtt_ms"] / 2) if meta["proxy"]
                                else "direct 127.0.0.1, no proxy"))
    if meta.get("journaled_fs"):
        L.append("- file system: a fresh journaled ext4 (%d GB image, loop-mounted) for the work "
                 "directory: sources, destinations and copies" % meta["journaled_fs"])
    L.append("- doveadm's configuration: %s" % (
        "served by the running destination Dovecot (its config socket, as on a mail server; "
        "`doveadm` without `-c`, Maildir)" if meta.get("served_config")
        else "`doveadm -c FILE` (doveadm executes doveconf at every start)"))
    L.append("- repetitions: %d (medians; tools alternate, order rotated per repetition); "
             "destination mail_fsync=%s; dsync: `sync -1 -R … imapc:` with imapc_features=\"%s\""
             % (meta["reps"], meta["mail_fsync"], meta["imapc_features"]))
    for user, sc in meta["scenarios"].items():
        L.append("- corpus `%s` (%s): %d messages, %.1f MB, %d folders, +%d messages for the "
                 "\"+1 %%\" pass" % (user, sc.get("label"), sc["messages"], sc["bytes"] / 1e6,
                                    sc["folders"], sc["extra"]) +
                 ("; %d of the messages are in the \\All folder, %d of those also in label "
                  "folders: migrate copies those into their label folders only (the +1 %% mail "
                  "arrives in All Mail and INBOX), so its expected count is %d"
                  % (sc["all_messages"], sc["all_labelled"], sc["messages"] - sc["all_labelled"])
                  if sc.get("all_labelled") else ""))
    L.append("")
    L.append("Columns: wall = elapsed seconds (%s); CPU = user+sys seconds of the client process "
             "(doveadm or mbsync); RSS = its peak resident set (MiB); src CPU = CPU seconds of the "
             "source Dovecot's imap processes for the session; MB/s = corpus bytes / wall (first "
             "pass); ok = repetitions that exited 0 with the expected message and folder counts "
             "at the destination. mbsync writes its own Maildir, so its row is the same under "
             "every destination format%s%s." % (
                 "/usr/bin/time, 10 ms steps",
                 "; \"limit: cp -r\" is `cp -r` of the source user's Maildir (page cache warm, "
                 "no fsync) to a fresh directory on the same disk: the floor for a first pass"
                 if "cp" in tools else "",
                 "; \"limit: raw FETCH\" is one connection through the same network reading "
                 "every body (LOGIN, LIST, then per folder EXAMINE and `UID FETCH 1:* "
                 "BODY.PEEK[]`, all pipelined; Python, bodies discarded): the fastest any "
                 "client could read the source; its msgs are the messages it read, its MB "
                 "column the bytes read" if "raw-fetch" in tools else ""))
    L.append("")
    for user, sc in meta["scenarios"].items():
        for f in formats:
            L.append("## %s corpus, destination %s" % (sc.get("label"), f))
            L.append("")
            L.append("| tool | pass | wall s | CPU s | RSS MiB | src CPU s | MB/s | dest MB | ok |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
            for t in tools:
                tf = first_fmt if t in FORMAT_FREE else f
                for p in PASSES:
                    x = s.get((user, tf, t, p))
                    if not x:
                        continue
                    mbs = (sc["bytes"] / 1e6 / x["wall"]) if (p == "first" and x["wall"]) else None
                    msgs = "" if x["ok"] == x["n"] else " (msgs %s, want %d; folders %s, want %s)" % (
                        "/".join(str(m) for m in x["msgs"]), x["expected"],
                        "/".join(str(m) for m in x["folders"]), x["folders_expected"])
                    L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %d/%d%s |" % (
                        TOOL_LABEL[t] if p == "first" else "", PASS_LABEL[p], fmt(x["wall"]),
                        fmt(x["cpu"]), fmt(x["rss"], 1), fmt(x["src_cpu"]),
                        fmt(mbs, 1) if mbs else "",
                        fmt(x["dest_bytes"] / 1e6, 1) if x["dest_bytes"] else
                        fmt(x["bytes_read"] / 1e6, 1) if x["bytes_read"] else "",
                        x["ok"], x["n"], msgs))
            L.append("")
            peers = [t for t in tools if t != "migrate"]
            if peers and "migrate" in tools:  # without migrate (e.g. --tools dsync): no ratios
                L.append("migrate ÷ peer (ratio of the medians; < 1 = migrate is faster / uses "
                         "less; – = peer value under 0.05 s, below the 10 ms clock resolution%s):"
                         % ("; for \"limit: raw FETCH\" the wall ratio is migrate's first pass "
                            "as a multiple of the wire limit (its CPU and RSS are a Python "
                            "reader's, not compared)" if "raw-fetch" in peers else ""))
                L.append("")
                L.append("| peer | pass | wall | CPU | RSS | src CPU |")
                L.append("|---|---|---:|---:|---:|---:|")
                for t in peers:
                    tf = first_fmt if t in FORMAT_FREE else f
                    for p in PASSES:
                        m = s.get((user, f, "migrate", p))
                        x = s.get((user, tf, t, p))
                        if not m or not x:
                            continue
                        ro = t in READ_ONLY
                        L.append("| %s | %s | %s | %s | %s | %s |" % (
                            TOOL_LABEL[t] if p == "first" else "", PASS_LABEL[p],
                            ratio(m["wall"], x["wall"]),
                            "–" if ro else ratio(m["cpu"], x["cpu"], 0.05),
                            "–" if ro else ratio(m["rss"], x["rss"]),
                            ratio(m["src_cpu"], x["src_cpu"], 0.05)))
                L.append("")
    if meta.get("scaling"):
        L += render_scaling(meta, s)
    L.append("## Anomalies")
    L.append("")
    if anomalies:
        for a in anomalies:
            L.append("- " + a)
    else:
        L.append("None: every measured command exited 0 and left the expected numbers of "
                 "messages and folders at the destination.")
    L.append("")
    return "\n".join(L)


def render_scaling(meta, s):
    """The same standard corpus at two sizes: wall(large) / wall(small) per
    tool and pass; the target is at most 1.1 x the size factor (10x -> 11)."""
    small, large = meta["scaling"]["small"], meta["scaling"]["large"]
    sc = meta["scenarios"]
    n0, n1 = sc[small]["messages"], sc[large]["messages"]
    target = 1.1 * n1 / n0
    L = []
    for f in meta["formats"]:
        L.append("## Scaling: standard corpus, %d vs %d messages, destination %s" % (n0, n1, f))
        L.append("")
        L.append("Median wall seconds (%d repetition(s) at %d, %d at %d messages); "
                 "ratio = wall(%d) / wall(%d), target ≤ %.3g."
                 % (meta["reps"], n0, meta["big_reps"], n1, n1, n0, target))
        L.append("")
        L.append("| tool | pass | wall s, %d msgs | wall s, %d msgs | ratio | ≤ %.3g |" % (n0, n1, target))
        L.append("|---|---|---:|---:|---:|---|")
        for t in meta["tools"]:
            tf = meta["formats"][0] if t in FORMAT_FREE else f
            for p in PASSES:
                a, b = s.get((small, tf, t, p)), s.get((large, tf, t, p))
                if not a or not b:
                    continue
                r = b["wall"] / a["wall"] if a["wall"] and b["wall"] is not None else None
                verdict = ("yes" if r <= target else "no") if p == "first" and r is not None else ""
                if a["ok"] != a["n"] or b["ok"] != b["n"]:
                    verdict = (verdict + " ").lstrip() + "(failed runs)"
                L.append("| %s | %s | %s | %s | %s | %s |" % (
                    TOOL_LABEL[t] if p == "first" else "", PASS_LABEL[p], fmt(a["wall"]),
                    fmt(b["wall"]), fmt(r), verdict))
        L.append("")
    L.append("(The target applies to the first pass; the no-change and +1 % rows are for "
             "information: their work does not grow linearly with the corpus.)")
    L.append("")
    return L


BULK_PASS_LABEL = {"first": "first", "nochange": "no-change"}


def render_bulk(meta, rows, anomalies):
    """Markdown for a --bulk run: per user set one table, tool x pass
    (medians over the repetitions), then migrate's users per minute as a
    multiple of each peer's."""
    L = ["# Bulk onboarding: %s users at once, RTT %d ms, %d workers" % (
        " and ".join(meta["sets"]), meta["rtt_ms"], meta["workers"]), ""]
    L.append("%s; Dovecot %s, plugin %s (sha256 %s); %s; load average %s at the start, %s at "
             "the end; %d repetition(s), medians; `%s`" % (
                 meta["date"], meta["versions"]["dovecot"], meta["versions"]["plugin"],
                 meta["versions"].get("plugin_sha256", "?"), meta["host"],
                 meta["loadavg"]["start"], meta["loadavg"]["end"], meta["reps"], meta["command"]))
    L.append("")
    for st in meta["sets"]:
        c = meta["corpus"][st]
        L.append("## %s: %s messages, %.0f MB, %d folders per user" % (
            st, "{:,}".format(c["messages"]), c["bytes"] / 1e6, c["folders_per_user"]))
        L.append("")
        L.append("| tool | pass | users/min | wall s | client CPU s | source CPU s | "
                 "max RSS/process MiB | tree RSS peak MiB | source conns peak | "
                 "workers | users exact |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        upm = {}
        for t in meta["tools"]:
            for p in ("first", "nochange"):
                rs = [r for r in rows if r["scenario"] == st and r["tool"] == t and r["pass"] == p]
                if not rs:
                    continue
                m = {k: med([r.get(k) for r in rs]) for k in (
                    "users_per_min", "wall", "cpu", "src_cpu", "rss_proc_max_kb",
                    "rss_tree_peak_kb", "src_conn_peak", "workers_seen")}
                upm[(t, p)] = m["users_per_min"]
                comm = sorted({r.get("rss_sampled_max_comm") or "" for r in rs} - {""})
                exact = "%s/%d" % ("/".join(str(r["users_exact"]) for r in rs), rs[0]["users"])
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    TOOL_LABEL[t] if p == "first" else "", BULK_PASS_LABEL[p],
                    fmt(m["users_per_min"], 0) if m["users_per_min"] and m["users_per_min"] >= 10
                    else fmt(m["users_per_min"], 1), fmt(m["wall"]), fmt(m["cpu"]),
                    fmt(m["src_cpu"]),
                    fmt(m["rss_proc_max_kb"] / 1024 if m["rss_proc_max_kb"] else None, 1),
                    fmt(m["rss_tree_peak_kb"] / 1024 if m["rss_tree_peak_kb"] else None, 1),
                    fmt(m["src_conn_peak"], 0), fmt(m["workers_seen"], 0)
                    if t != "mbsync" else "(xargs -P)", exact))
        L.append("")
        for t in ("migrate", "migrate-1"):
            for peer in ("dsync-pf100", "mbsync"):
                for p in ("first", "nochange"):
                    a, b = upm.get((t, p)), upm.get((peer, p))
                    if a and b:
                        L.append("- %s %s pass: %.2f × the users per minute of %s" % (
                            TOOL_LABEL[t], BULK_PASS_LABEL[p], a / b, TOOL_LABEL[peer]))
        L.append("")
    L.append("users/min: users of the set / wall seconds of the whole command x 60. "
             "max RSS/process: the largest of GNU time's %M (the client, or the largest "
             "mbsync under xargs) and the VmHWM of every sampled process (the "
             "doveadm-server workers). tree RSS peak: the largest sum of VmRSS over the "
             "command's processes and the destination's doveadm-server processes in one "
             "sample (every 0.2 s). source conns peak: established connections to the "
             "source's IMAP port, sampled. client CPU: GNU time's (workers not included); "
             "source CPU: the source's imap processes. users exact: users whose "
             "destination has exactly the source's messages and folders.")
    L.append("")
    if anomalies:
        L.append("## Anomalies")
        L.append("")
        L.extend("- " + x for x in anomalies)
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS.json")
    with open(sys.argv[1]) as f:
        d = json.load(f)
    sys.stdout.write((render_bulk if d["meta"].get("bulk") else render)(
        d["meta"], d["rows"], d["anomalies"]))
