-- edgemon central schema, version 4 (MySQL 8 / MariaDB 10.6+), InnoDB, utf8mb4.
--
-- Applied by edgemon itself when missing (`edgemon sync` or the daemon), printed by
-- `edgemon schema mysql`. Every statement is idempotent (IF NOT EXISTS / OR REPLACE), so
-- applying it twice, or by two appliances at once, is harmless. `schema_version` holds the
-- versions applied; an edgemon that finds a newer version than it knows refuses to write.
-- A database of version 1 is upgraded in place (schema/mysql-v2.sql, under the lock
-- 'edgemon.schema'): its rows are kept and get the legacy epoch 0. A database of version 2 gets
-- the prune horizons of version 3 (schema/mysql-v3.sql, the same lock); a database of version 3
-- gets the metric family tables and views of version 4 (schema/mysql-v4.sql: nothing to alter,
-- the tables below are new).
--
-- Many appliances share one database: every row carries its appliance, and each row's
-- primary key starts with appliance_id, so appliances never collide nor wait on each other.
-- Within an appliance, every row also carries the epoch of the buffer file that made it: a
-- random 64-bit number drawn when the file was created. A replaced buffer (new disk,
-- reinstall) restarts its sequence numbers under a new epoch, and two boxes configured with
-- the same appliance id sync side by side (view appliance_buffers lists them); neither ever
-- overwrites or is mistaken for the other's rows.
-- Every time is a DATETIME(3) in UTC, everywhere (edgemon sets time_zone = '+00:00' on its
-- sessions and writes UTC; the values carry no zone): read them in a UTC session. Grafana's
-- MySQL data source connects in UTC and reads them directly ($__timeFilter(collected_at));
-- each metric family has a view family_<name> whose `time` column (UTC) is the sample's
-- collected_at, with the host's and appliance's names.
-- Statements are separated by a semicolon at the end of a line.

CREATE TABLE IF NOT EXISTS schema_version (
    version     INT UNSIGNED NOT NULL PRIMARY KEY,
    applied_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    applied_by  VARCHAR(64)  NOT NULL COMMENT 'appliance id that applied it'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per appliance (the `appliance.id` of its configuration).
CREATE TABLE IF NOT EXISTS appliances (
    id            INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name          VARCHAR(64)  NOT NULL,
    first_seen_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_sync_at  DATETIME(3)  NULL,
    UNIQUE KEY appliance_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per buffer file (epoch) that synced as an appliance. More than one recent row for
-- one appliance means a replaced buffer, or two boxes sharing an appliance id.
CREATE TABLE IF NOT EXISTS buffers (
    appliance_id  INT UNSIGNED NOT NULL,
    epoch         BIGINT       NOT NULL,
    first_seen_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    last_sync_at  DATETIME(3)  NULL,
    PRIMARY KEY (appliance_id, epoch),
    CONSTRAINT buffers_appliance FOREIGN KEY (appliance_id) REFERENCES appliances (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per monitored host of an appliance (host names are unique per appliance only).
CREATE TABLE IF NOT EXISTS hosts (
    id            INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    appliance_id  INT UNSIGNED NOT NULL,
    name          VARCHAR(255) NOT NULL,
    address       VARCHAR(255) NOT NULL,
    first_seen_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY host_name (appliance_id, name),
    CONSTRAINT hosts_appliance FOREIGN KEY (appliance_id) REFERENCES appliances (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per sample. Identity: (appliance_id, epoch, host_id, seq), seq being the per-host
-- sequence number the buffer gave the sample. Re-sending an identical sample is a no-op; a
-- re-sent sample whose identity holds different values (checksum) is a collision: counted and
-- kept on the appliance, never written over. collected_at is the agent's clock, received_at
-- the appliance's; clock_skewed flags an agent clock further than collect.max_clock_skew from
-- the appliance's.
CREATE TABLE IF NOT EXISTS samples (
    appliance_id  INT UNSIGNED     NOT NULL,
    epoch         BIGINT           NOT NULL DEFAULT 0 COMMENT 'the buffer file''s epoch; 0 for rows of schema version 1',
    host_id       INT UNSIGNED     NOT NULL,
    seq           BIGINT           NOT NULL,
    collected_at  DATETIME(3)      NOT NULL,
    received_at   DATETIME(3)      NOT NULL,
    clock_skewed  BOOLEAN          NOT NULL DEFAULT FALSE,
    cpu           DOUBLE           NOT NULL COMMENT 'total CPU %, 0-100',
    mem_used      BIGINT UNSIGNED  NOT NULL COMMENT 'bytes',
    mem_total     BIGINT UNSIGNED  NOT NULL COMMENT 'bytes',
    swap_used     BIGINT UNSIGNED  NOT NULL COMMENT 'bytes',
    swap_total    BIGINT UNSIGNED  NOT NULL COMMENT 'bytes',
    uptime_s      BIGINT UNSIGNED  NOT NULL,
    boot_time     DATETIME         NULL,
    load1         DOUBLE           NULL,
    load5         DOUBLE           NULL,
    load15        DOUBLE           NULL,
    hostname      VARCHAR(255)     NULL COMMENT 'the host''s own name, as its agent reports it',
    os            VARCHAR(255)     NULL,
    kernel        VARCHAR(255)     NULL,
    extras        JSON             NULL COMMENT 'report elements edgemon does not model',
    synced_at     DATETIME(3)      NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    checksum      BIGINT UNSIGNED  NULL COMMENT 'FNV-1a of the values as sent; NULL for rows of schema version 1',
    PRIMARY KEY (appliance_id, epoch, host_id, seq),
    KEY samples_host_time (host_id, collected_at),
    KEY samples_time (collected_at),
    CONSTRAINT samples_host FOREIGN KEY (host_id) REFERENCES hosts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per-core CPU usage of each sample, core 0 first. Join on (appliance_id, epoch, host_id, seq).
CREATE TABLE IF NOT EXISTS sample_cores (
    appliance_id  INT UNSIGNED      NOT NULL,
    epoch         BIGINT            NOT NULL DEFAULT 0,
    host_id       INT UNSIGNED      NOT NULL,
    seq           BIGINT            NOT NULL,
    core          SMALLINT UNSIGNED NOT NULL,
    cpu           DOUBLE            NOT NULL COMMENT 'CPU % of this core, 0-100',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, core)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;


-- Metric families (version 4). Each family of crates/proto/src/report/family has a child table
-- sample_<family>, keyed by the sample's identity plus the member's key (none for the singleton
-- family system), one column per field of the family's spec, NULL where the agent did not
-- measure a value. Its rows are written in the transaction of their sample and only with it, so
-- the sample's checksum (which covers them) and its watermark account for them too.
-- sample_sections holds, per sample that carried sections, one row per family measured: a family
-- without a row was not measured; `members` 0 means measured, none (no failed unit); `cut` counts
-- members the agent left out (its per-family cap), `refused` members the collector refused.
CREATE TABLE IF NOT EXISTS sample_sections (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    family              VARCHAR(32)     NOT NULL COMMENT 'the family: its rows are in sample_<family>',
    members             INT UNSIGNED    NOT NULL,
    cut                 INT UNSIGNED    NOT NULL COMMENT 'members the agent left out (per-family cap)',
    refused             INT UNSIGNED    NOT NULL COMMENT 'members the collector refused as invalid',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, family)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family system: CPU by mode, memory available, OOM kills, processes and open files vs limits. One row per sample;
-- columns as in crates/proto/src/report/family/system.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_system (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `cpu_user`          DOUBLE          NULL COMMENT 'CPU time in user mode (with nice) (percent)',
    `cpu_system`        DOUBLE          NULL COMMENT 'CPU time in the kernel (with irq, softirq) (percent)',
    `cpu_iowait`        DOUBLE          NULL COMMENT 'CPU time idle waiting for I/O (percent)',
    `cpu_steal`         DOUBLE          NULL COMMENT 'CPU time taken by the hypervisor (percent)',
    `cpu_idle`          DOUBLE          NULL COMMENT 'CPU time idle (percent)',
    `mem_available`     BIGINT UNSIGNED NULL COMMENT 'memory available without swapping (bytes)',
    `oom_kills`         BIGINT UNSIGNED NULL COMMENT 'processes killed by the OOM killer since boot (count)',
    `procs`             BIGINT UNSIGNED NULL COMMENT 'processes and threads (count)',
    `pid_max`           BIGINT UNSIGNED NULL COMMENT 'the kernel''s pid_max (count)',
    `files_open`        BIGINT UNSIGNED NULL COMMENT 'open file handles (count)',
    `files_max`         BIGINT UNSIGNED NULL COMMENT 'the kernel''s file-max (count)',
    PRIMARY KEY (appliance_id, epoch, host_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family filesystems: mounted filesystems: space, inodes, read-only, hanging. One row per member (mount) of a sample;
-- columns as in crates/proto/src/report/family/filesystems.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_filesystems (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `mount`             VARCHAR(255)    NOT NULL,
    `fstype`            VARCHAR(255)    NULL COMMENT 'filesystem type (ext4, xfs, nfs4, tmpfs, ...)',
    `device`            VARCHAR(255)    NULL COMMENT 'mounted device or source',
    `size`              BIGINT UNSIGNED NULL COMMENT 'total size (bytes)',
    `used`              BIGINT UNSIGNED NULL COMMENT 'space in use (size minus free) (bytes)',
    `avail`             BIGINT UNSIGNED NULL COMMENT 'space available to unprivileged users (bytes)',
    `files`             BIGINT UNSIGNED NULL COMMENT 'inodes in all (count)',
    `files_free`        BIGINT UNSIGNED NULL COMMENT 'inodes free (count)',
    `readonly`          BOOLEAN         NULL COMMENT 'mounted read-only',
    `hanging`           BOOLEAN         NULL COMMENT 'statvfs did not answer within the deadline',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, `mount`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family interfaces: network interfaces: traffic, errors, drops, state, speed. One row per member (name) of a sample;
-- columns as in crates/proto/src/report/family/interfaces.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_interfaces (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `name`              VARCHAR(255)    NOT NULL,
    `oper`              VARCHAR(255)    NULL COMMENT 'operational state (up, down, ...)',
    `speed`             BIGINT UNSIGNED NULL COMMENT 'link speed (Mbit/s)',
    `rx_bytes`          BIGINT UNSIGNED NULL COMMENT 'bytes received (bytes)',
    `rx_packets`        BIGINT UNSIGNED NULL COMMENT 'packets received (count)',
    `rx_errors`         BIGINT UNSIGNED NULL COMMENT 'receive errors (count)',
    `rx_drops`          BIGINT UNSIGNED NULL COMMENT 'received packets dropped (count)',
    `tx_bytes`          BIGINT UNSIGNED NULL COMMENT 'bytes sent (bytes)',
    `tx_packets`        BIGINT UNSIGNED NULL COMMENT 'packets sent (count)',
    `tx_errors`         BIGINT UNSIGNED NULL COMMENT 'transmit errors (count)',
    `tx_drops`          BIGINT UNSIGNED NULL COMMENT 'packets dropped on transmit (count)',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, `name`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family devices: block devices: operations, bytes, time busy. One row per member (name) of a sample;
-- columns as in crates/proto/src/report/family/devices.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_devices (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `name`              VARCHAR(255)    NOT NULL,
    `reads`             BIGINT UNSIGNED NULL COMMENT 'reads completed (count)',
    `writes`            BIGINT UNSIGNED NULL COMMENT 'writes completed (count)',
    `read_bytes`        BIGINT UNSIGNED NULL COMMENT 'bytes read (bytes)',
    `write_bytes`       BIGINT UNSIGNED NULL COMMENT 'bytes written (bytes)',
    `busy_ms`           BIGINT UNSIGNED NULL COMMENT 'time with I/O in flight (ms)',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, `name`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family units: systemd units in the failed state. One row per member (name) of a sample;
-- columns as in crates/proto/src/report/family/units.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_units (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `name`              VARCHAR(255)    NOT NULL,
    `sub`               VARCHAR(255)    NULL COMMENT 'sub-state',
    `result`            VARCHAR(255)    NULL COMMENT 'why it failed (exit-code, signal, timeout, oom-kill, ...)',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, `name`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Family processes: watched processes and how many are running. One row per member (name) of a sample;
-- columns as in crates/proto/src/report/family/processes.rs (a test checks they agree).
CREATE TABLE IF NOT EXISTS sample_processes (
    appliance_id        INT UNSIGNED    NOT NULL,
    epoch               BIGINT          NOT NULL,
    host_id             INT UNSIGNED    NOT NULL,
    seq                 BIGINT          NOT NULL,
    `name`              VARCHAR(255)    NOT NULL,
    `count`             BIGINT UNSIGNED NULL COMMENT 'running processes that match the watch (count)',
    PRIMARY KEY (appliance_id, epoch, host_id, seq, `name`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Failed collection attempts. Identity: (appliance_id, epoch, local_id), local_id being the
-- buffer's row id (AUTOINCREMENT there: never reused).
CREATE TABLE IF NOT EXISTS collection_errors (
    appliance_id  INT UNSIGNED    NOT NULL,
    epoch         BIGINT          NOT NULL DEFAULT 0,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    at            DATETIME(3)     NOT NULL,
    class         VARCHAR(32)     NOT NULL COMMENT 'unreachable, timeout, auth-refused, ...',
    message       TEXT            NOT NULL,
    checksum      BIGINT UNSIGNED NULL,
    PRIMARY KEY (appliance_id, epoch, local_id),
    KEY collection_errors_host_time (host_id, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Alert transitions. Identity: (appliance_id, epoch, local_id).
CREATE TABLE IF NOT EXISTS alert_events (
    appliance_id  INT UNSIGNED    NOT NULL,
    epoch         BIGINT          NOT NULL DEFAULT 0,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    rule          VARCHAR(32)     NOT NULL COMMENT 'cpu, memory, swap, reboot, unreachable',
    kind          VARCHAR(16)     NOT NULL COMMENT 'firing, reminder, resolved, flapping, stale',
    value         DOUBLE          NULL,
    threshold     DOUBLE          NULL,
    at            DATETIME(3)     NOT NULL,
    message       TEXT            NOT NULL,
    checksum      BIGINT UNSIGNED NULL,
    PRIMARY KEY (appliance_id, epoch, local_id),
    KEY alert_events_host_time (host_id, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Samples an appliance dropped before they reached this database (buffer bounds), or that
-- this database refused (reason 'quarantined: <MySQL error>'): never a silent loss.
-- Identity: (appliance_id, epoch, local_id).
CREATE TABLE IF NOT EXISTS drops (
    appliance_id  INT UNSIGNED    NOT NULL,
    epoch         BIGINT          NOT NULL DEFAULT 0,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    first_seq     BIGINT          NOT NULL,
    last_seq      BIGINT          NOT NULL,
    count         BIGINT          NOT NULL,
    reason        TEXT            NOT NULL,
    at            DATETIME(3)     NOT NULL,
    checksum      BIGINT UNSIGNED NULL,
    PRIMARY KEY (appliance_id, epoch, local_id),
    KEY drops_host_seq (appliance_id, epoch, host_id, first_seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Completeness, per (appliance, epoch, host), written by each batch in the batch's own
-- transaction: first_seq and last_seq bound what the buffer holds or held (last_seq is its
-- newest sample, sent or not), samples_stored counts the rows the batches really inserted
-- (never a re-send), samples_dropped the samples of the drops rows inserted, stored_last_seq
-- the newest inserted seq. One row per host and buffer: the completeness view reads these and
-- one index dive per row, never the samples themselves.
CREATE TABLE IF NOT EXISTS watermarks (
    appliance_id     INT UNSIGNED NOT NULL,
    epoch            BIGINT       NOT NULL,
    host_id          INT UNSIGNED NOT NULL,
    first_seq        BIGINT       NOT NULL,
    last_seq         BIGINT       NOT NULL COMMENT 'newest seq the buffer held at the last batch',
    stored_last_seq  BIGINT       NOT NULL DEFAULT 0 COMMENT 'newest seq a batch inserted',
    samples_stored   BIGINT       NOT NULL DEFAULT 0,
    samples_dropped  BIGINT       NOT NULL DEFAULT 0,
    updated_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    pruned_through_seq BIGINT     NOT NULL DEFAULT 0 COMMENT 'newest seq `edgemon central prune` deleted: everything up to it is explained',
    samples_pruned   BIGINT       NOT NULL DEFAULT 0 COMMENT 'samples `edgemon central prune` deleted',
    PRIMARY KEY (appliance_id, epoch, host_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Retention of the journals (`edgemon central prune`), per (appliance, epoch, table): the newest
-- local id deleted and how many rows. The appliance's sync never re-sends a row at or below it.
-- (The samples' horizon is per host: watermarks.pruned_through_seq.)
CREATE TABLE IF NOT EXISTS prune_horizons (
    appliance_id       INT UNSIGNED NOT NULL,
    epoch              BIGINT       NOT NULL,
    table_name         VARCHAR(32)  NOT NULL COMMENT 'collection_errors, alert_events, drops',
    pruned_through_id  BIGINT       NOT NULL DEFAULT 0,
    rows_pruned        BIGINT       NOT NULL DEFAULT 0,
    pruned_at          DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (appliance_id, epoch, table_name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Buffers seen per appliance: more than one live epoch under one appliance means a replaced
-- buffer file or two boxes with the same appliance id; their rows are kept apart by epoch.
CREATE OR REPLACE VIEW appliance_buffers AS
SELECT a.name AS appliance,
       b.epoch,
       b.first_seen_at,
       b.last_sync_at,
       (SELECT COUNT(*) FROM watermarks w
         WHERE w.appliance_id = b.appliance_id AND w.epoch = b.epoch) AS hosts,
       b.appliance_id
FROM buffers b
JOIN appliances a ON a.id = b.appliance_id;

-- Completeness, one row per (appliance, epoch, host), answered from the watermarks alone:
--   expected     samples the buffer numbered: last_seq - first_seq + 1
--   unsent       expected - stored - dropped: never inserted and never recorded as dropped
--                (still buffered on an appliance that is behind, or lost with its buffer)
--   vanished     inserted once but gone from this database: every row of the host not pruned
--                when none is left, else the inserted tail above the newest row present (a
--                restore from backup, a manual delete)
--   pruned       deleted by `edgemon central prune` (retention): explained, never loss
--   unexplained  unsent + vanished; zero when nothing was lost silently.
-- A host whose central row was deleted is registered again under a new id; its new row counts
-- the deleted samples as unsent. Holes in the middle: see sequence_gaps, filtered by host.
CREATE OR REPLACE VIEW completeness AS
SELECT a.name AS appliance,
       m.epoch,
       h.name AS host,
       m.first_seq,
       m.last_seq,
       m.last_seq - m.first_seq + 1 AS expected,
       m.samples_stored AS stored,
       m.samples_dropped AS dropped,
       m.central_last_seq,
       GREATEST(m.last_seq - m.first_seq + 1 - m.samples_stored - m.samples_dropped, 0) AS unsent,
       CASE WHEN m.central_last_seq IS NULL THEN GREATEST(m.samples_stored - m.samples_pruned, 0)
            ELSE GREATEST(m.stored_last_seq - GREATEST(m.central_last_seq, m.pruned_through_seq), 0) END AS vanished,
       GREATEST(m.last_seq - m.first_seq + 1 - m.samples_stored - m.samples_dropped, 0)
           + CASE WHEN m.central_last_seq IS NULL THEN GREATEST(m.samples_stored - m.samples_pruned, 0)
                  ELSE GREATEST(m.stored_last_seq - GREATEST(m.central_last_seq, m.pruned_through_seq), 0) END AS unexplained,
       m.updated_at,
       m.appliance_id,
       m.host_id,
       m.samples_pruned AS pruned,
       m.pruned_through_seq
FROM (SELECT w.*,
             (SELECT s.seq FROM samples s
               WHERE s.appliance_id = w.appliance_id AND s.epoch = w.epoch AND s.host_id = w.host_id
               ORDER BY s.seq DESC LIMIT 1) AS central_last_seq
        FROM watermarks w) m
JOIN appliances a ON a.id = m.appliance_id
JOIN hosts h ON h.id = m.host_id;

-- Drill-down: per appliance, epoch and host, every run of missing sequence numbers below the
-- newest sample present that recorded drops do not account for; sequence numbers up to the
-- host's prune horizon (watermarks.pruned_through_seq) are explained. Filter it by appliance_id,
-- epoch and host_id (from a completeness row): the server pushes that filter into the window,
-- which then reads only that host's rows. A filter on the names cannot be pushed down.
-- (Samples still buffered on an appliance show up here until synced.)
CREATE OR REPLACE VIEW sequence_gaps AS
SELECT a.name AS appliance,
       h.name AS host,
       g.appliance_id,
       g.epoch,
       g.host_id,
       g.first_missing,
       g.last_missing,
       g.last_missing - g.first_missing + 1 AS missing,
       (SELECT COALESCE(SUM(LEAST(d.last_seq, g.last_missing)
                            - GREATEST(d.first_seq, g.first_missing) + 1), 0)
          FROM drops d
         WHERE d.appliance_id = g.appliance_id AND d.epoch = g.epoch AND d.host_id = g.host_id
           AND d.first_seq <= g.last_missing AND d.last_seq >= g.first_missing) AS dropped
FROM (SELECT s.appliance_id,
             s.epoch,
             s.host_id,
             GREATEST(COALESCE(LAG(s.seq) OVER (PARTITION BY s.appliance_id, s.epoch, s.host_id ORDER BY s.seq),
                               w.first_seq - 1, 0),
                      COALESCE(w.pruned_through_seq, 0)) + 1
                 AS first_missing,
             s.seq - 1 AS last_missing
        FROM samples s
        LEFT JOIN watermarks w
          ON w.appliance_id = s.appliance_id AND w.epoch = s.epoch AND w.host_id = s.host_id) g
JOIN appliances a ON a.id = g.appliance_id
JOIN hosts h ON h.id = g.host_id
WHERE g.last_missing >= g.first_missing
  AND g.last_missing - g.first_missing + 1 >
      (SELECT COALESCE(SUM(LEAST(d.last_seq, g.last_missing)
                           - GREATEST(d.first_seq, g.first_missing) + 1), 0)
         FROM drops d
        WHERE d.appliance_id = g.appliance_id AND d.epoch = g.epoch AND d.host_id = g.host_id
          AND d.first_seq <= g.last_missing AND d.last_seq >= g.first_missing);

-- Grafana's read path, one view per family: `time` is the sample's collected_at (UTC), with
-- the appliance's and host's names. A panel of one host over 30 days filters on host and time:
-- the server finds the host's id by name, reads samples through samples_host_time
-- (host_id, collected_at) and the family's rows by primary key. Example:
--   SELECT time, mount AS metric, 100 * used / (used + avail) AS value FROM family_filesystems
--   WHERE host = 'db1' AND $__timeFilter(time) ORDER BY time
CREATE OR REPLACE VIEW family_system AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`cpu_user`,
       f.`cpu_system`,
       f.`cpu_iowait`,
       f.`cpu_steal`,
       f.`cpu_idle`,
       f.`mem_available`,
       f.`oom_kills`,
       f.`procs`,
       f.`pid_max`,
       f.`files_open`,
       f.`files_max`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_system f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

CREATE OR REPLACE VIEW family_filesystems AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`mount`,
       f.`fstype`,
       f.`device`,
       f.`size`,
       f.`used`,
       f.`avail`,
       f.`files`,
       f.`files_free`,
       f.`readonly`,
       f.`hanging`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_filesystems f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

CREATE OR REPLACE VIEW family_interfaces AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`name`,
       f.`oper`,
       f.`speed`,
       f.`rx_bytes`,
       f.`rx_packets`,
       f.`rx_errors`,
       f.`rx_drops`,
       f.`tx_bytes`,
       f.`tx_packets`,
       f.`tx_errors`,
       f.`tx_drops`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_interfaces f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

CREATE OR REPLACE VIEW family_devices AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`name`,
       f.`reads`,
       f.`writes`,
       f.`read_bytes`,
       f.`write_bytes`,
       f.`busy_ms`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_devices f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

CREATE OR REPLACE VIEW family_units AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`name`,
       f.`sub`,
       f.`result`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_units f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

CREATE OR REPLACE VIEW family_processes AS
SELECT s.collected_at AS time,
       a.name AS appliance,
       h.name AS host,
       f.`name`,
       f.`count`,
       s.received_at,
       f.appliance_id,
       f.epoch,
       f.host_id,
       f.seq
FROM sample_processes f
JOIN samples s ON s.appliance_id = f.appliance_id AND s.epoch = f.epoch AND s.host_id = f.host_id AND s.seq = f.seq
JOIN hosts h ON h.id = f.host_id
JOIN appliances a ON a.id = f.appliance_id;

INSERT INTO schema_version (version, applied_by) VALUES (4, COALESCE(@edgemon_appliance, CURRENT_USER()))
    ON DUPLICATE KEY UPDATE version = version;
