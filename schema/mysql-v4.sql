-- edgemon central schema: upgrade of a version 3 database to version 4, in place.
--
-- Run by edgemon under the lock 'edgemon.schema' when it finds version 3 (shipped as
-- /usr/share/edgemon/schema/mysql-v4.sql). Version 4 adds the metric families (issue 22): the
-- child tables sample_sections and sample_<family> (filesystems, interfaces, devices, system,
-- units, processes) and the Grafana views family_<family>, all created by schema/mysql.sql
-- (CREATE TABLE IF NOT EXISTS, CREATE OR REPLACE VIEW). One existing table is altered:
-- alert_events.rule widens from 32 to 300 characters, since a family alert names its member
-- (`fs-used:/var/lib/postgresql/data`, a member key being up to 255 bytes); alert_events is a
-- journal of transitions, small beside samples. No sample row is touched, and an upgrade cut
-- short simply runs again (the MODIFY is idempotent). Then version 4 is recorded.
--
-- By hand: run this file, then schema/mysql.sql (edgemon schema mysql), against a version 3
-- database. Never edit this file once shipped.

ALTER TABLE alert_events MODIFY rule VARCHAR(300) NOT NULL COMMENT 'cpu, memory, swap, reboot, unreachable, or a family rule with its member: fs-used:/var (v4: 300, a 255-byte member and the rule)';
