#!/usr/bin/env python3
"""Cost of the per-host `sample_counts` triggers (src/buffer/counts.rs) on the sync loop's
marking, and of the writer's `PRAGMA quick_check` at open (src/buffer/damage.rs).

Builds a schema-1 buffer of 20 hosts x 50 000 samples (synchronous = FULL, WAL, as edgemon
runs it) twice, without and with the triggers, marks every row synced in transactions of 500
ids (as a sync batch does), and times the page check. Run from the repository root:

    python3 benches/sample_counts.py
"""
import os
import sqlite3
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(path, triggers):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.executescript(open(os.path.join(ROOT, "schema/sqlite.sql")).read())
    if triggers:
        src = open(os.path.join(ROOT, "src/buffer/counts.rs")).read()
        c.executescript(src.split('const DEFINITION: &str = "')[1].split('";')[0])
    c.executescript("INSERT INTO hosts (name, address) VALUES "
                    + ",".join("('h%d', 'a')" % i for i in range(20)) + ";")
    c.execute("BEGIN")
    c.execute("""WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000)
      INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                           mem_total, swap_used, swap_total, uptime_s)
      SELECT h.id, n.x, n.x, n.x, 1.0, '1.0,2.0', 1, 2, 0, 0, 1 FROM n, hosts h""")
    c.execute("COMMIT")
    return c


with tempfile.TemporaryDirectory() as tmp:
    for triggers in (False, True):
        path = os.path.join(tmp, "b%d.sqlite" % triggers)
        c = build(path, triggers)
        ids = [r[0] for r in c.execute("SELECT id FROM samples ORDER BY id")]
        t = time.time()
        for i in range(0, len(ids), 500):
            c.execute("BEGIN IMMEDIATE")
            c.executemany("UPDATE samples SET sync_state = 1, synced_at = 1 WHERE id = ?",
                          [(x,) for x in ids[i:i + 500]])
            c.execute("COMMIT")
        mark = time.time() - t
        t = time.time()
        ok = c.execute("PRAGMA quick_check(1)").fetchone()[0]
        check = time.time() - t
        size = os.path.getsize(path)
        print(f"triggers={triggers}: marked {len(ids)} rows in {mark:.2f} s; "
              f"quick_check {ok} in {check:.2f} s on {size / 1e6:.0f} MB")
        c.close()
