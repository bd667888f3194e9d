-- edgemon central schema, version 1 (MySQL 8 / MariaDB 10.6+), InnoDB, utf8mb4.
--
-- Applied by edgemon itself when missing (`edgemon sync` or the daemon), printed by
-- `edgemon schema mysql`. Every statement is idempotent (IF NOT EXISTS / OR REPLACE), so
-- applying it twice, or by two appliances at once, is harmless. `schema_version` holds the
-- versions applied; an edgemon that finds a newer version than it knows refuses to write.
--
-- Many appliances share one database: every row carries its appliance, and each row's
-- primary key starts with appliance_id, so appliances never collide nor wait on each other.
-- Times are DATETIME(3) in UTC (edgemon sets time_zone = '+00:00' on its sessions), which
-- Grafana's MySQL data source reads directly ($__timeFilter(collected_at)).
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

-- One row per sample. Identity: (appliance_id, host_id, seq), seq being the per-host
-- sequence number the appliance gave the sample when it buffered it; re-sending a sample
-- is a no-op. collected_at is the agent's clock, received_at the appliance's; clock_skewed
-- flags an agent clock further than collect.max_clock_skew from the appliance's.
CREATE TABLE IF NOT EXISTS samples (
    appliance_id  INT UNSIGNED     NOT NULL,
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
    PRIMARY KEY (appliance_id, host_id, seq),
    KEY samples_host_time (host_id, collected_at),
    KEY samples_time (collected_at),
    CONSTRAINT samples_host FOREIGN KEY (host_id) REFERENCES hosts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per-core CPU usage of each sample, core 0 first. Join on (appliance_id, host_id, seq).
CREATE TABLE IF NOT EXISTS sample_cores (
    appliance_id  INT UNSIGNED      NOT NULL,
    host_id       INT UNSIGNED      NOT NULL,
    seq           BIGINT            NOT NULL,
    core          SMALLINT UNSIGNED NOT NULL,
    cpu           DOUBLE            NOT NULL COMMENT 'CPU % of this core, 0-100',
    PRIMARY KEY (appliance_id, host_id, seq, core)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Failed collection attempts. Identity: (appliance_id, local_id), the buffer's row id.
CREATE TABLE IF NOT EXISTS collection_errors (
    appliance_id  INT UNSIGNED    NOT NULL,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    at            DATETIME(3)     NOT NULL,
    class         VARCHAR(32)     NOT NULL COMMENT 'unreachable, timeout, auth-refused, ...',
    message       TEXT            NOT NULL,
    PRIMARY KEY (appliance_id, local_id),
    KEY collection_errors_host_time (host_id, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Alert transitions. Identity: (appliance_id, local_id).
CREATE TABLE IF NOT EXISTS alert_events (
    appliance_id  INT UNSIGNED    NOT NULL,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    rule          VARCHAR(32)     NOT NULL COMMENT 'cpu, memory, swap, reboot, unreachable',
    kind          VARCHAR(16)     NOT NULL COMMENT 'firing, reminder, resolved, flapping, stale',
    value         DOUBLE          NULL,
    threshold     DOUBLE          NULL,
    at            DATETIME(3)     NOT NULL,
    message       TEXT            NOT NULL,
    PRIMARY KEY (appliance_id, local_id),
    KEY alert_events_host_time (host_id, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Samples an appliance dropped before they reached this database (buffer bounds), or that
-- this database refused (reason 'quarantined: <MySQL error>'): never a silent loss.
-- Identity: (appliance_id, local_id).
CREATE TABLE IF NOT EXISTS drops (
    appliance_id  INT UNSIGNED    NOT NULL,
    local_id      BIGINT          NOT NULL,
    host_id       INT UNSIGNED    NOT NULL,
    first_seq     BIGINT          NOT NULL,
    last_seq      BIGINT          NOT NULL,
    count         BIGINT          NOT NULL,
    reason        TEXT            NOT NULL,
    at            DATETIME(3)     NOT NULL,
    PRIMARY KEY (appliance_id, local_id),
    KEY drops_host_seq (appliance_id, host_id, first_seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Completeness check: per appliance and host, every run of missing sequence numbers below
-- the newest sample received that recorded drops do not account for. Empty when nothing
-- was lost silently. (Samples still buffered on an appliance show up here until synced.)
CREATE OR REPLACE VIEW sequence_gaps AS
SELECT a.name AS appliance,
       h.name AS host,
       g.appliance_id,
       g.host_id,
       g.first_missing,
       g.last_missing,
       g.last_missing - g.first_missing + 1 AS missing,
       (SELECT COALESCE(SUM(LEAST(d.last_seq, g.last_missing)
                            - GREATEST(d.first_seq, g.first_missing) + 1), 0)
          FROM drops d
         WHERE d.appliance_id = g.appliance_id AND d.host_id = g.host_id
           AND d.first_seq <= g.last_missing AND d.last_seq >= g.first_missing) AS dropped
FROM (SELECT s.appliance_id,
             s.host_id,
             COALESCE(LAG(s.seq) OVER (PARTITION BY s.appliance_id, s.host_id ORDER BY s.seq), 0) + 1
                 AS first_missing,
             s.seq - 1 AS last_missing
        FROM samples s) g
JOIN appliances a ON a.id = g.appliance_id
JOIN hosts h ON h.id = g.host_id
WHERE g.last_missing >= g.first_missing
  AND g.last_missing - g.first_missing + 1 >
      (SELECT COALESCE(SUM(LEAST(d.last_seq, g.last_missing)
                           - GREATEST(d.first_seq, g.first_missing) + 1), 0)
         FROM drops d
        WHERE d.appliance_id = g.appliance_id AND d.host_id = g.host_id
          AND d.first_seq <= g.last_missing AND d.last_seq >= g.first_missing);

INSERT INTO schema_version (version, applied_by) VALUES (1, COALESCE(@edgemon_appliance, CURRENT_USER()))
    ON DUPLICATE KEY UPDATE version = version;
