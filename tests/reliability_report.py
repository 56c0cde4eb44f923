#!/usr/bin/python3
"""Writes tests/RELIABILITY.md from the suite's own output: pytest's JUnit XML
(which tests ran, passed, failed, how long), the fuzz run's log (how many
executions each target made) and the valgrind run's meson summary.  The table's rows say how each fault class is
injected and what is checked; every result column comes from the output.

    tests/reliability_report.py JUNIT.xml FUZZ.log MEMCHECK.log TSAN.log > tests/RELIABILITY.md
"""
import re
import sys
import xml.etree.ElementTree as ET

# fault class -> (how it is injected, trials, what is checked, test name patterns)
ROWS = [
    ("Sanitizers", "the whole pytest suite against an ASan+UBSan build",
     "every test", "no sanitizer report, every test passes", None),
    ("ThreadSanitizer", "a -Db_sanitize=thread build (tests/tsan/run): 16 and 8 concurrent "
     "readers, SIGHUP during reads and slow re-lists, create with its snapshot thread",
     "see result", "no report from any process, the mount daemon included", "TSAN"),
    ("Memcheck", "C unit tests under valgrind memcheck", "every unit test",
     "no invalid access, no definite leak", "MEMCHECK"),
    ("Fuzzing", "libFuzzer from seed corpora (tests/fuzz)", "see runs",
     "no crash, leak or sanitizer report", "FUZZ"),
    ("Crash: create", "SIGKILL at random points, local (30) and uploading to S3 (30, "
     "plus one mid-multipart)", "61",
     "no final-named partial archive locally or in S3, no multipart upload left open, "
     "the next create succeeds",
     [r"test_killed_create_leaves_no_archive", r"test_thirty_kills_of_an_uploading_create",
      r"test_killed_multipart_upload_is_aborted"]),
    ("Crash: restore", "SIGKILL at random points of restore", "30",
     "every target file wholly old or new, rollback dir complete once named, rerun finishes",
     [r"test_sigkill_at_random_points", r"test_committed_rows_in_a_wal"]),
    ("Corruption", "seeded bit flips, truncations, zeroed ranges, swapped members",
     "100 ours + 100 plain + 20 via the mount",
     "verify/restore exit 4 with the target untouched or accept exactly the right bytes; "
     "mount: right bytes or EIO", [r"test_corruption\."]),
    ("Damage (single)", "a flipped byte, damaged pages under a matching index, a truncated "
     "archive, a damaged member, damaged cache files", "6",
     "exit 4 naming the db; EIO for the damaged range only; cache refetched",
     [r"test_flipped_byte", r"test_damaged_pages", r"test_truncated_archive",
      r"test_damaged_member_gives_eio", r"test_corrupted_cache_entries", r"test_exit_4_verify"]),
    ("Hostile archives", "absolute paths, `..`, symlink/hardlink escapes, fifos, duplicates, "
     "strays (tar); sizes/offsets of 2^63, index outside the file, lying footer, "
     "100,000 entries (our format)", "7 tar + 6 index + 100k entries",
     "exit 4, nothing written outside the staging dir, mount exposes nothing else, "
     "bounded time and memory", [r"test_hostile"]),
    ("S3 faults", "proxy injecting resets, 500/503/SlowDown, cut and short bodies, slow "
     "answers (25% of requests, 3 seeds); 503s to the first requests; endpoint down and back",
     "3 seeds x 5 commands + mount reads",
     "success with exactly the right bytes after retries, or the documented exit code / EIO "
     "within the time bound", [r"test_faults\.", r"test_retries_through_503s",
                               r"test_endpoint_down", r"test_wrong_secret"]),
    ("Secrets", "a second, unprivileged uid made by the test", "every stage",
     "cannot read staging, temporary or final archive, rollback or restored secrets, the "
     "mount's secrets.json with allow_other; no credential in any output, log or argv",
     [r"test_every_stage_is_private", r"test_secrets_only_for_the_owner",
      r"test_zz_no_secret_in_any_output", r"test_large_archive_goes_multipart"]),
    ("Hostile local user", "the service user (uid 65534 in the tests) plants symlinks in "
     "DATA_DIR (app.db, apps/<app>, streamhub.db, secrets.json; openat2 and the O_NOFOLLOW "
     "fallback), in a restore target and in the backup dir (temporary names, lock, staging "
     "dir, backup names, the dir itself); races 10 restores swapping staging and rollback "
     "dirs for links, and 5 creates planting temporaries, locally and in S3; plants junk "
     "under a backup's name; reads the mount through allow_other", "see result",
     "create reads nothing outside DATA_DIR and never publishes or uploads a planted file; "
     "restore writes nothing outside the target, new files take its owner; no link in the "
     "backup dir is read; junk never shields the newest backup from prune; other users read "
     "only what uid=/gid=/umask= grant",
     [r"test_symlinked_app", r"leaving_data_dir", r"test_symlinks_that_stay_inside",
      r"test_a_symlink_on_the_way_of_a_write", r"test_a_symlinked_app_not_in_the_backup",
      r"take_the_owner_of_the_target", r"keep_their_owner", r"test_allow_other_lets_in_only",
      r"test_mount_unit_lets_other_users_in", r"test_a_target_owner_swapping",
      r"test_planted_", r"test_symlinked_backup_dir", r"test_symlink_with_a_backup_name",
      r"test_latest_never_picks_a_symlink", r"linked_by_another_user",
      r"test_prune_never_keeps_junk", r"test_prune_gives_up_after",
      r"owned_by_another_user_gets_a_warning"]),
    ("Odd names", "app dirs named in Unicode (accents, emoji, 255 bytes), with control "
     "characters, backslashes, invalid UTF-8; under LANG=C, C.UTF-8 and unset; pax and GNU "
     "tar archives of them", "see result",
     "a backup create wrote always restores; bad names skipped with one escaped warning line",
     [r"test_names\."]),
    ("S3 prefix forms", "`trail/`, `/lead`, `/both/`, `a//b`, `/` in BACKUP_S3_PREFIX, "
     "`s3=` and the mount's SOURCE; a deeper prefix beside ours", "see result",
     "create, list, restore, prune and the mount agree on one key; no other prefix's "
     "upload aborted", [r"test_s3_prefix_spelling", r"test_mount_source_argument_prefix",
                        r"test_stale_upload_sweep_spares"]),
    ("Clock skew", "a backup dated 29991231T000000Z beside real ones, and alone", "4",
     "`latest` is the newest not in the future, with a warning; prune never deletes it",
     [r"future_dated"]),
    ("Stale caches", "a plain archive edited after indexing (same size, mtime put back), "
     "replaced by another of the same size, an S3 object overwritten, a damaged cached index",
     "4 + 9 hostile pax records",
     "EIO or exit 4 for the changed range, never wrong bytes; a new archive is indexed anew",
     [r"test_plain_index\."]),
    ("Load", "16 concurrent readers (sqlite3 queries and cats) over local and S3 backups, "
     "20 s; 8 readers under a 4 MiB cache cap", "2 runs",
     "every result right, RSS bounded, cache never over its cap",
     [r"test_sixteen_readers", r"test_concurrent_readers_and_cache_cap"]),
]


def junit(path):
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        tests.append((f"{case.get('classname')}.{case.get('name')}", failed, skipped,
                      float(case.get("time") or 0)))
    return tests


def main(argv):
    tests = junit(argv[1])
    fuzz = open(argv[2]).read() if len(argv) > 2 else ""
    memcheck = open(argv[3]).read() if len(argv) > 3 else ""
    tsan = open(argv[4]).read() if len(argv) > 4 else ""
    print("# Reliability report\n")
    print("Generated by `tests/reliability_report.py` from the output of one run of "
          "`.ci/run` (pytest's JUnit XML of the ASan+UBSan run, the fuzz log, the valgrind "
          "summary, the ThreadSanitizer run); do not edit by hand.\n")
    print("| fault class | how it is injected | trials | what is checked | result |")
    print("|---|---|---|---|---|")
    for name, how, trials, checked, pats in ROWS:
        if pats == "FUZZ":
            runs = re.findall(r"fuzz_(\w+): (ok|FAILED)(?:, (\d+) runs in (\d+) s)?", fuzz)
            result = ", ".join(f"{t} {s}" + (f" ({int(n):,} runs)" if n else "")
                               for t, s, n, _ in runs) or "not run"
        elif pats == "TSAN":
            summary = re.findall(r"^(\d+ (?:passed|failed).*?) in [\d.]+s", tsan, re.M)
            verdict = re.search(r"^ThreadSanitizer: (.*)$", tsan, re.M)
            result = (f"{summary[-1]}; {verdict.group(1).rstrip(':')}" if summary and verdict
                      else "not run")
        elif pats == "MEMCHECK":
            ok = re.search(r"^Ok:\s+(\d+)", memcheck, re.M)
            bad = re.search(r"^Fail:\s+(\d+)", memcheck, re.M)
            result = f"{ok.group(1)} passed, {bad.group(1)} failed" if ok and bad else "not run"
        elif pats is None:
            failed = sum(1 for t in tests if t[1])
            result = f"{len(tests) - failed} passed, {failed} failed" if tests else "not run"
        else:
            hit = [t for t in tests if any(re.search(p, t[0]) for p in pats)]
            failed = [t for t in hit if t[1]]
            skipped = [t for t in hit if t[2]]
            ran = len(hit) - len(skipped)
            result = ("not run" if not ran else
                      f"{ran - len(failed)}/{ran} tests passed ({sum(t[3] for t in hit):.0f} s)"
                      + (f", {len(skipped)} skipped" if skipped else "")
                      + (": FAILED " + ", ".join(t[0] for t in failed) if failed else ""))
        print(f"| {name} | {how} | {trials} | {checked} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
