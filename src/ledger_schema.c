/* ledger_schema.c - the ledger's migrations, embedded in the binary, and
 * the driver that applies them under an advisory lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/ledger.h"
#include "dtq/log.h"

/* Migration 1: tables, indexes and the functions that need to read a row
 * again after a conditional UPDATE matched nothing (claim, cancel, reap,
 * dead_letter). Functions capture the migration's search_path (FROM
 * CURRENT) so they resolve the ledger's own tables whatever the caller's. */
static const char migration_1[] =
	"CREATE FUNCTION epoch_ms(ts timestamptz) RETURNS bigint\n"
	"LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
	"AS $$ SELECT floor(extract(epoch FROM ts) * 1000)::bigint $$;\n"
	"\n"
	"CREATE TABLE tasks (\n"
	"  key              text PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 2048),\n"
	"  task_name        text NOT NULL,\n"
	"  payload_sha256   text NOT NULL DEFAULT '' CHECK (payload_sha256 ~ '^([0-9a-f]{64})?$'),\n"
	"  payload          bytea,\n"
	"  state            text NOT NULL DEFAULT 'queued' CHECK (state IN\n"
	"                     ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),\n"
	"  fence            bigint NOT NULL DEFAULT 0,\n"
	"  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
	"  max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),\n"
	"  owner            text,\n"
	"  lease_until      timestamptz,\n"
	"  cancel_requested boolean NOT NULL DEFAULT false,\n"
	"  exit_code        integer,\n"
	"  error            text,\n"
	"  labels           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),\n"
	"  message_id       text,\n"
	"  sent_at          timestamptz,\n"
	"  created_at       timestamptz NOT NULL DEFAULT now(),\n"
	"  started_at       timestamptz,\n"
	"  finished_at      timestamptz,\n"
	"  updated_at       timestamptz NOT NULL DEFAULT now(),\n"
	"  -- a lease exists exactly while the task runs\n"
	"  CONSTRAINT running_has_lease CHECK\n"
	"    ((state = 'running') = (owner IS NOT NULL AND lease_until IS NOT NULL)),\n"
	"  CONSTRAINT terminal_has_finish CHECK\n"
	"    (state IN ('queued', 'running') OR finished_at IS NOT NULL)\n"
	");\n"
	"-- reaper: expired leases\n"
	"CREATE INDEX tasks_running_lease ON tasks (lease_until) WHERE state = 'running';\n"
	"-- autoscaler and stats: backlog and its oldest row\n"
	"CREATE INDEX tasks_queued_created ON tasks (created_at) WHERE state = 'queued';\n"
	"-- reaper: rows whose message was never sent (or must be sent again)\n"
	"CREATE INDEX tasks_unsent ON tasks (updated_at) WHERE state = 'queued' AND sent_at IS NULL;\n"
	"-- (no index for admin lists by state: a heartbeat would pay for it on every beat)\n"
	"\n"
	"CREATE TABLE attempts (\n"
	"  key        text NOT NULL REFERENCES tasks (key) ON DELETE CASCADE,\n"
	"  fence      bigint NOT NULL,\n"
	"  worker     text NOT NULL,\n"
	"  started_at timestamptz NOT NULL DEFAULT now(),\n"
	"  ended_at   timestamptz,\n"
	"  outcome    text CHECK (outcome IN ('succeeded', 'failed', 'retry', 'cancelled', 'dead',\n"
	"                                     'lost', 'released')),\n"
	"  exit_code  integer,\n"
	"  error      text,\n"
	"  PRIMARY KEY (key, fence)\n"
	");\n"
	"CREATE INDEX attempts_open ON attempts (key) WHERE ended_at IS NULL;\n"
	"\n"
	"CREATE TABLE workers (\n"
	"  id           text PRIMARY KEY,\n"
	"  host         text NOT NULL DEFAULT '',\n"
	"  pid          integer,\n"
	"  started_at   timestamptz NOT NULL DEFAULT now(),\n"
	"  heartbeat_at timestamptz NOT NULL DEFAULT now(),\n"
	"  state        text NOT NULL DEFAULT 'running' CHECK (state IN\n"
	"                 ('starting', 'running', 'draining', 'stopped', 'lost')),\n"
	"  in_flight    integer NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE INDEX workers_alive ON workers (heartbeat_at)\n"
	"  WHERE state IN ('starting', 'running', 'draining');\n"
	"\n"
	"-- Closes the open attempt rows of a task (an execution that will never\n"
	"-- report: its lease expired, or the task was finished for it).\n"
	"CREATE FUNCTION close_attempts(p_key text, p_outcome text) RETURNS void\n"
	"LANGUAGE sql SET search_path FROM CURRENT AS $$\n"
	"  UPDATE attempts SET ended_at = now(), outcome = p_outcome\n"
	"  WHERE key = p_key AND ended_at IS NULL\n"
	"$$;\n"
	"\n"
	"CREATE FUNCTION claim_task(p_key text, p_owner text, p_lease_ms bigint, p_message_id text,\n"
	"    p_register boolean, p_task_name text, p_sha text, p_labels jsonb,\n"
	"    p_max_attempts integer)\n"
	"RETURNS TABLE (outcome text, registered boolean, task tasks)\n"
	"LANGUAGE plpgsql SET search_path FROM CURRENT AS $$\n"
	"#variable_conflict use_column\n"
	"DECLARE\n"
	"  r tasks;\n"
	"  lease interval := p_lease_ms * interval '1 millisecond';\n"
	"BEGIN\n"
	"  FOR i IN 1..5 LOOP\n"
	"    -- the claim: one conditional UPDATE; the fence is the new lease's token\n"
	"    UPDATE tasks AS t SET state = 'running', fence = t.fence + 1, attempts = t.attempts + 1,\n"
	"        owner = p_owner, lease_until = now() + lease, started_at = now(),\n"
	"        finished_at = NULL, exit_code = NULL, updated_at = now(),\n"
	"        message_id = coalesce(p_message_id, t.message_id)\n"
	"      WHERE t.key = p_key AND NOT t.cancel_requested AND t.attempts < t.max_attempts\n"
	"        AND (t.state = 'queued' OR (t.state = 'running' AND t.lease_until < now()))\n"
	"      RETURNING t.* INTO r;\n"
	"    IF FOUND THEN\n"
	"      PERFORM close_attempts(p_key, 'lost');\n"
	"      INSERT INTO attempts (key, fence, worker) VALUES (p_key, r.fence, p_owner);\n"
	"      RETURN QUERY SELECT 'CLAIMED'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    -- say why not, from a fresh snapshot, with the row locked\n"
	"    SELECT * INTO r FROM tasks AS t WHERE t.key = p_key FOR UPDATE;\n"
	"    IF NOT FOUND THEN\n"
	"      IF NOT p_register THEN\n"
	"        RETURN QUERY SELECT 'UNKNOWN_KEY'::text, false, NULL::tasks;\n"
	"        RETURN;\n"
	"      END IF;\n"
	"      INSERT INTO tasks AS t (key, task_name, payload_sha256, labels, max_attempts, state,\n"
	"          fence, attempts, owner, lease_until, started_at, message_id, sent_at)\n"
	"        VALUES (p_key, p_task_name, coalesce(p_sha, ''), coalesce(p_labels, '{}'),\n"
	"          p_max_attempts, 'running', 1, 1, p_owner, now() + lease, now(), p_message_id, now())\n"
	"        ON CONFLICT (key) DO NOTHING\n"
	"        RETURNING t.* INTO r;\n"
	"      IF FOUND THEN\n"
	"        INSERT INTO attempts (key, fence, worker) VALUES (p_key, r.fence, p_owner);\n"
	"        RETURN QUERY SELECT 'CLAIMED'::text, true, r;\n"
	"        RETURN;\n"
	"      END IF;\n"
	"      CONTINUE; -- registered by someone else meanwhile: claim it like any row\n"
	"    END IF;\n"
	"    IF r.state IN ('succeeded', 'failed', 'dead', 'cancelled') THEN\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.state = 'running' AND r.lease_until >= now() THEN\n"
	"      RETURN QUERY SELECT 'LEASED_ELSEWHERE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.cancel_requested THEN\n"
	"      UPDATE tasks AS t SET state = 'cancelled', owner = NULL, lease_until = NULL,\n"
	"          finished_at = now(), updated_at = now()\n"
	"        WHERE t.key = p_key RETURNING t.* INTO r;\n"
	"      PERFORM close_attempts(p_key, 'lost');\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.attempts >= r.max_attempts THEN\n"
	"      UPDATE tasks AS t SET state = 'dead', owner = NULL, lease_until = NULL,\n"
	"          finished_at = now(), updated_at = now(),\n"
	"          error = coalesce(t.error || '; ', '') ||\n"
	"                  format('attempts exhausted (%s of %s)', t.attempts, t.max_attempts)\n"
	"        WHERE t.key = p_key RETURNING t.* INTO r;\n"
	"      PERFORM close_attempts(p_key, 'lost');\n"
	"      RETURN QUERY SELECT 'EXHAUSTED'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    -- claimable now but not in the UPDATE's snapshot (inserted meanwhile): again\n"
	"  END LOOP;\n"
	"  RAISE EXCEPTION 'claim of % did not settle', p_key USING ERRCODE = '40001';\n"
	"END $$;\n"
	"\n"
	"CREATE FUNCTION cancel_task(p_key text)\n"
	"RETURNS TABLE (outcome text, task tasks)\n"
	"LANGUAGE plpgsql SET search_path FROM CURRENT AS $$\n"
	"#variable_conflict use_column\n"
	"DECLARE\n"
	"  r tasks;\n"
	"BEGIN\n"
	"  FOR i IN 1..5 LOOP\n"
	"    UPDATE tasks AS t SET state = 'cancelled', cancel_requested = true,\n"
	"        finished_at = now(), updated_at = now()\n"
	"      WHERE t.key = p_key AND t.state = 'queued' RETURNING t.* INTO r;\n"
	"    IF FOUND THEN\n"
	"      RETURN QUERY SELECT 'CANCELLED'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    UPDATE tasks AS t SET cancel_requested = true, updated_at = now()\n"
	"      WHERE t.key = p_key AND t.state = 'running' RETURNING t.* INTO r;\n"
	"    IF FOUND THEN\n"
	"      RETURN QUERY SELECT 'CANCEL_REQUESTED'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    SELECT * INTO r FROM tasks AS t WHERE t.key = p_key;\n"
	"    IF NOT FOUND THEN\n"
	"      RETURN QUERY SELECT 'UNKNOWN_KEY'::text, NULL::tasks;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.state NOT IN ('queued', 'running') THEN\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"  END LOOP;\n"
	"  RAISE EXCEPTION 'cancel of % did not settle', p_key USING ERRCODE = '40001';\n"
	"END $$;\n"
	"\n"
	"-- Expired leases -> queued again (or dead past max_attempts, or cancelled\n"
	"-- when a cancel was asked for); queued rows whose message was not sent ->\n"
	"-- reported for re-sending; silent workers -> lost. The first row carries\n"
	"-- the number of workers marked lost (action 'workers').\n"
	"CREATE FUNCTION reap_tasks(p_resend_after_ms bigint, p_worker_stale_ms bigint,\n"
	"    p_limit integer, p_dry_run boolean)\n"
	"RETURNS TABLE (action text, task tasks, n bigint)\n"
	"LANGUAGE plpgsql SET search_path FROM CURRENT AS $$\n"
	"#variable_conflict use_column\n"
	"DECLARE\n"
	"  r tasks;\n"
	"  act text;\n"
	"  nw bigint;\n"
	"  stale interval := p_worker_stale_ms * interval '1 millisecond';\n"
	"BEGIN\n"
	"  IF p_dry_run THEN\n"
	"    SELECT count(*) INTO nw FROM workers AS w\n"
	"      WHERE w.state IN ('starting', 'running', 'draining') AND w.heartbeat_at < now() - stale;\n"
	"  ELSE\n"
	"    UPDATE workers AS w SET state = 'lost'\n"
	"      WHERE w.state IN ('starting', 'running', 'draining') AND w.heartbeat_at < now() - stale;\n"
	"    GET DIAGNOSTICS nw = ROW_COUNT;\n"
	"  END IF;\n"
	"  RETURN QUERY SELECT 'workers'::text, NULL::tasks, nw;\n"
	"\n"
	"  FOR r IN SELECT * FROM tasks AS t\n"
	"      WHERE t.state = 'running' AND t.lease_until < now()\n"
	"      ORDER BY t.lease_until LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP\n"
	"    IF r.cancel_requested THEN\n"
	"      act := 'cancelled';\n"
	"    ELSIF r.attempts >= r.max_attempts THEN\n"
	"      act := 'dead';\n"
	"    ELSE\n"
	"      act := 'requeued';\n"
	"    END IF;\n"
	"    IF NOT p_dry_run THEN\n"
	"      UPDATE tasks AS t SET\n"
	"          state = CASE act WHEN 'requeued' THEN 'queued' ELSE act END,\n"
	"          owner = NULL, lease_until = NULL, updated_at = now(),\n"
	"          sent_at = CASE act WHEN 'requeued' THEN NULL ELSE t.sent_at END,\n"
	"          finished_at = CASE act WHEN 'requeued' THEN NULL ELSE now() END,\n"
	"          error = CASE act WHEN 'dead' THEN coalesce(t.error || '; ', '') ||\n"
	"                    format('lease expired on the last attempt (%s of %s)',\n"
	"                           t.attempts, t.max_attempts)\n"
	"                  ELSE t.error END\n"
	"        WHERE t.key = r.key RETURNING t.* INTO r;\n"
	"      PERFORM close_attempts(r.key, 'lost');\n"
	"    END IF;\n"
	"    RETURN QUERY SELECT act, r, 0::bigint;\n"
	"  END LOOP;\n"
	"\n"
	"  RETURN QUERY SELECT 'resend'::text, t, 0::bigint FROM tasks AS t\n"
	"    WHERE t.state = 'queued' AND t.sent_at IS NULL\n"
	"      AND t.updated_at < now() - p_resend_after_ms * interval '1 millisecond'\n"
	"    ORDER BY t.updated_at LIMIT p_limit;\n"
	"END $$;\n"
	"\n"
	"CREATE FUNCTION dead_letter_task(p_key text, p_task_name text, p_reason text)\n"
	"RETURNS TABLE (outcome text, task tasks)\n"
	"LANGUAGE plpgsql SET search_path FROM CURRENT AS $$\n"
	"#variable_conflict use_column\n"
	"DECLARE\n"
	"  r tasks;\n"
	"BEGIN\n"
	"  FOR i IN 1..5 LOOP\n"
	"    INSERT INTO tasks AS t (key, task_name, state, error, finished_at, sent_at)\n"
	"      VALUES (p_key, coalesce(p_task_name, 'unknown'), 'dead', p_reason, now(), now())\n"
	"      ON CONFLICT (key) DO NOTHING RETURNING t.* INTO r;\n"
	"    IF FOUND THEN\n"
	"      RETURN QUERY SELECT 'OK'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    SELECT * INTO r FROM tasks AS t WHERE t.key = p_key FOR UPDATE;\n"
	"    IF NOT FOUND THEN\n"
	"      CONTINUE; -- deleted meanwhile\n"
	"    END IF;\n"
	"    IF r.state NOT IN ('queued', 'running') THEN\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.state = 'running' AND r.lease_until >= now() THEN\n"
	"      RETURN QUERY SELECT 'LEASED_ELSEWHERE'::text, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    UPDATE tasks AS t SET state = 'dead', owner = NULL, lease_until = NULL,\n"
	"        finished_at = now(), updated_at = now(), error = p_reason\n"
	"      WHERE t.key = p_key RETURNING t.* INTO r;\n"
	"    PERFORM close_attempts(p_key, 'dead');\n"
	"    RETURN QUERY SELECT 'OK'::text, r;\n"
	"    RETURN;\n"
	"  END LOOP;\n"
	"  RAISE EXCEPTION 'dead_letter of % did not settle', p_key USING ERRCODE = '40001';\n"
	"END $$;\n";

/* Migration 2: faster, same rules (see the SQL's comments and
 * docs/ledger-client.md "Performance"). Migration 1 is never edited: it may
 * be deployed. */
static const char migration_2[] =
	"-- Migration 2: the same rules, cheaper for the server on every claim,\n"
	"-- heartbeat and complete (docs/ledger-client.md, \"Performance\").\n"
	"\n"
	"-- epoch_ms was declared IMMUTABLE around the STABLE extract(), so the\n"
	"-- planner could not inline it and planned its body again at every call\n"
	"-- site of every statement (eight per claim). STABLE is what it is.\n"
	"CREATE OR REPLACE FUNCTION epoch_ms(ts timestamptz) RETURNS bigint\n"
	"LANGUAGE sql STABLE PARALLEL SAFE\n"
	"AS $$ SELECT floor(extract(epoch FROM ts) * 1000)::bigint $$;\n"
	"\n"
	"-- A heartbeat sets lease_until and updated_at. With no index on either\n"
	"-- column (not even in a predicate) the update is HOT: no index entries,\n"
	"-- less WAL, and the page keeps its own dead versions pruned. The reaper\n"
	"-- and the stats walk the running rows through their partial index and\n"
	"-- filter on the lease; there are only as many as tasks in flight.\n"
	"DROP INDEX tasks_running_lease;\n"
	"CREATE INDEX tasks_running ON tasks (started_at) WHERE state = 'running';\n"
	"-- re-send scan: unsent queued rows, filtered and sorted by updated_at\n"
	"DROP INDEX tasks_unsent;\n"
	"CREATE INDEX tasks_unsent ON tasks (created_at) WHERE state = 'queued' AND sent_at IS NULL;\n"
	"-- open executions are found by key through the primary key (key, fence);\n"
	"-- without this index complete's attempts update is HOT too\n"
	"DROP INDEX attempts_open;\n"
	"-- room on each page for the new version of a row (HOT needs the same page)\n"
	"ALTER TABLE tasks SET (fillfactor = 80);\n"
	"ALTER TABLE attempts SET (fillfactor = 90);\n"
	"\n"
	"-- The CHECK constraints stay, but in PL/pgSQL. PostgreSQL reads every\n"
	"-- CHECK expression of a table back from its stored node text, plans and\n"
	"-- compiles it on every INSERT or UPDATE statement; the eight checks of\n"
	"-- tasks (with a regular expression for the sha256) were a third of the\n"
	"-- server's work per claim-heartbeat-complete cycle. A function call is a\n"
	"-- short expression, and its PL/pgSQL body is compiled once per connection.\n"
	"-- A failing row is reported as before: SQLSTATE 23514 and the name of the\n"
	"-- rule it broke (as migration 1 named its constraints).\n"
	"ALTER TABLE tasks\n"
	"  DROP CONSTRAINT tasks_key_check,\n"
	"  DROP CONSTRAINT tasks_payload_sha256_check,\n"
	"  DROP CONSTRAINT tasks_state_check,\n"
	"  DROP CONSTRAINT tasks_attempts_check,\n"
	"  DROP CONSTRAINT tasks_max_attempts_check,\n"
	"  DROP CONSTRAINT tasks_labels_check,\n"
	"  DROP CONSTRAINT running_has_lease,\n"
	"  DROP CONSTRAINT terminal_has_finish;\n"
	"ALTER TABLE attempts DROP CONSTRAINT attempts_outcome_check;\n"
	"\n"
	"-- NULL passes, as with CHECK. Built-in functions are schema-qualified and\n"
	"-- the function has no SET search_path: that would cost a GUC change per row.\n"
	"CREATE FUNCTION tasks_row_valid(p_key text, p_sha text, p_state text, p_attempts integer,\n"
	"    p_max_attempts integer, p_owner text, p_lease_until timestamptz, p_labels jsonb,\n"
	"    p_finished_at timestamptz)\n"
	"RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$\n"
	"DECLARE\n"
	"  rule text;\n"
	"BEGIN\n"
	"  IF (pg_catalog.octet_length(p_key) BETWEEN 1 AND 2048\n"
	"      AND pg_catalog.octet_length(p_sha) IN (0, 64)\n"
	"      AND pg_catalog.ltrim(p_sha, '0123456789abcdef') = ''\n"
	"      AND p_state IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')\n"
	"      AND p_attempts >= 0 AND p_max_attempts >= 1\n"
	"      AND pg_catalog.jsonb_typeof(p_labels) = 'object'\n"
	"      AND (p_state = 'running') = (p_owner IS NOT NULL AND p_lease_until IS NOT NULL)\n"
	"      AND (p_state IN ('queued', 'running') OR p_finished_at IS NOT NULL)) IS NOT FALSE THEN\n"
	"    RETURN true;\n"
	"  END IF;\n"
	"  -- which rule: named as migration 1's constraints were\n"
	"  rule := CASE\n"
	"    WHEN (pg_catalog.octet_length(p_key) BETWEEN 1 AND 2048) IS FALSE THEN 'tasks_key_check'\n"
	"    WHEN (pg_catalog.octet_length(p_sha) IN (0, 64)\n"
	"          AND pg_catalog.ltrim(p_sha, '0123456789abcdef') = '') IS FALSE\n"
	"      THEN 'tasks_payload_sha256_check'\n"
	"    WHEN (p_state IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')) IS FALSE\n"
	"      THEN 'tasks_state_check'\n"
	"    WHEN (p_attempts >= 0) IS FALSE THEN 'tasks_attempts_check'\n"
	"    WHEN (p_max_attempts >= 1) IS FALSE THEN 'tasks_max_attempts_check'\n"
	"    WHEN (pg_catalog.jsonb_typeof(p_labels) = 'object') IS FALSE THEN 'tasks_labels_check'\n"
	"    WHEN ((p_state = 'running') = (p_owner IS NOT NULL AND p_lease_until IS NOT NULL)) IS FALSE\n"
	"      THEN 'running_has_lease'\n"
	"    ELSE 'terminal_has_finish' END;\n"
	"  RAISE EXCEPTION 'new row for relation \"tasks\" violates check constraint \"%\"', rule\n"
	"    USING ERRCODE = 'check_violation', TABLE = 'tasks', CONSTRAINT = rule;\n"
	"END $$;\n"
	"\n"
	"CREATE FUNCTION attempts_row_valid(p_outcome text) RETURNS boolean\n"
	"LANGUAGE plpgsql IMMUTABLE AS $$\n"
	"BEGIN\n"
	"  IF (p_outcome IN ('succeeded', 'failed', 'retry', 'cancelled', 'dead', 'lost', 'released'))\n"
	"      IS NOT FALSE THEN\n"
	"    RETURN true;\n"
	"  END IF;\n"
	"  RAISE EXCEPTION 'new row for relation \"attempts\" violates check constraint \"%\"',\n"
	"    'attempts_outcome_check'\n"
	"    USING ERRCODE = 'check_violation', TABLE = 'attempts', CONSTRAINT = 'attempts_outcome_check';\n"
	"END $$;\n"
	"\n"
	"-- NOT VALID: checking every old row would hold the tables' ACCESS EXCLUSIVE\n"
	"-- lock for seconds per million rows, and those rows already passed the same\n"
	"-- rules under migration 1's constraints. Small tables are validated at once\n"
	"-- (below); a large one can be with VALIDATE CONSTRAINT, which blocks no writes.\n"
	"ALTER TABLE tasks ADD CONSTRAINT tasks_row_valid CHECK (tasks_row_valid(key, payload_sha256,\n"
	"  state, attempts, max_attempts, owner, lease_until, labels, finished_at)) NOT VALID;\n"
	"ALTER TABLE attempts ADD CONSTRAINT attempts_row_valid CHECK (attempts_row_valid(outcome))\n"
	"  NOT VALID;\n"
	"DO $$\n"
	"BEGIN\n"
	"  IF (SELECT pg_catalog.count(*) FROM (SELECT FROM tasks LIMIT 100001) AS s) <= 100000 THEN\n"
	"    ALTER TABLE tasks VALIDATE CONSTRAINT tasks_row_valid;\n"
	"  END IF;\n"
	"  IF (SELECT pg_catalog.count(*) FROM (SELECT FROM attempts LIMIT 100001) AS s) <= 100000 THEN\n"
	"    ALTER TABLE attempts VALIDATE CONSTRAINT attempts_row_valid;\n"
	"  END IF;\n"
	"END $$;\n"
	"\n"
	"-- The claim closes a lost execution's attempts row itself: close_attempts(),\n"
	"-- a SQL function with its own search_path, was planned again on every call.\n"
	"CREATE OR REPLACE FUNCTION claim_task(p_key text, p_owner text, p_lease_ms bigint, p_message_id text,\n"
	"    p_register boolean, p_task_name text, p_sha text, p_labels jsonb,\n"
	"    p_max_attempts integer)\n"
	"RETURNS TABLE (outcome text, registered boolean, task tasks)\n"
	"LANGUAGE plpgsql AS $$\n"
	"#variable_conflict use_column\n"
	"DECLARE\n"
	"  r tasks;\n"
	"  lease interval := p_lease_ms * interval '1 millisecond';\n"
	"BEGIN\n"
	"  FOR i IN 1..5 LOOP\n"
	"    -- the claim: one conditional UPDATE; the fence is the new lease's token\n"
	"    UPDATE tasks AS t SET state = 'running', fence = t.fence + 1, attempts = t.attempts + 1,\n"
	"        owner = p_owner, lease_until = now() + lease, started_at = now(),\n"
	"        finished_at = NULL, exit_code = NULL, updated_at = now(),\n"
	"        message_id = coalesce(p_message_id, t.message_id)\n"
	"      WHERE t.key = p_key AND NOT t.cancel_requested AND t.attempts < t.max_attempts\n"
	"        AND (t.state = 'queued' OR (t.state = 'running' AND t.lease_until < now()))\n"
	"      RETURNING t.* INTO r;\n"
	"    IF FOUND THEN\n"
	"      UPDATE attempts AS a SET ended_at = now(), outcome = 'lost'\n"
	"        WHERE a.key = p_key AND a.ended_at IS NULL;\n"
	"      INSERT INTO attempts (key, fence, worker) VALUES (p_key, r.fence, p_owner);\n"
	"      RETURN QUERY SELECT 'CLAIMED'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    -- say why not, from a fresh snapshot, with the row locked\n"
	"    SELECT * INTO r FROM tasks AS t WHERE t.key = p_key FOR UPDATE;\n"
	"    IF NOT FOUND THEN\n"
	"      IF NOT p_register THEN\n"
	"        RETURN QUERY SELECT 'UNKNOWN_KEY'::text, false, NULL::tasks;\n"
	"        RETURN;\n"
	"      END IF;\n"
	"      INSERT INTO tasks AS t (key, task_name, payload_sha256, labels, max_attempts, state,\n"
	"          fence, attempts, owner, lease_until, started_at, message_id, sent_at)\n"
	"        VALUES (p_key, p_task_name, coalesce(p_sha, ''), coalesce(p_labels, '{}'),\n"
	"          p_max_attempts, 'running', 1, 1, p_owner, now() + lease, now(), p_message_id, now())\n"
	"        ON CONFLICT (key) DO NOTHING\n"
	"        RETURNING t.* INTO r;\n"
	"      IF FOUND THEN\n"
	"        INSERT INTO attempts (key, fence, worker) VALUES (p_key, r.fence, p_owner);\n"
	"        RETURN QUERY SELECT 'CLAIMED'::text, true, r;\n"
	"        RETURN;\n"
	"      END IF;\n"
	"      CONTINUE; -- registered by someone else meanwhile: claim it like any row\n"
	"    END IF;\n"
	"    IF r.state IN ('succeeded', 'failed', 'dead', 'cancelled') THEN\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.state = 'running' AND r.lease_until >= now() THEN\n"
	"      RETURN QUERY SELECT 'LEASED_ELSEWHERE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.cancel_requested THEN\n"
	"      UPDATE tasks AS t SET state = 'cancelled', owner = NULL, lease_until = NULL,\n"
	"          finished_at = now(), updated_at = now()\n"
	"        WHERE t.key = p_key RETURNING t.* INTO r;\n"
	"      UPDATE attempts AS a SET ended_at = now(), outcome = 'lost'\n"
	"        WHERE a.key = p_key AND a.ended_at IS NULL;\n"
	"      RETURN QUERY SELECT 'ALREADY_DONE'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    IF r.attempts >= r.max_attempts THEN\n"
	"      UPDATE tasks AS t SET state = 'dead', owner = NULL, lease_until = NULL,\n"
	"          finished_at = now(), updated_at = now(),\n"
	"          error = coalesce(t.error || '; ', '') ||\n"
	"                  format('attempts exhausted (%s of %s)', t.attempts, t.max_attempts)\n"
	"        WHERE t.key = p_key RETURNING t.* INTO r;\n"
	"      UPDATE attempts AS a SET ended_at = now(), outcome = 'lost'\n"
	"        WHERE a.key = p_key AND a.ended_at IS NULL;\n"
	"      RETURN QUERY SELECT 'EXHAUSTED'::text, false, r;\n"
	"      RETURN;\n"
	"    END IF;\n"
	"    -- claimable now but not in the UPDATE's snapshot (inserted meanwhile): again\n"
	"  END LOOP;\n"
	"  RAISE EXCEPTION 'claim of % did not settle', p_key USING ERRCODE = '40001';\n"
	"END $$;\n"
	"\n"
	"-- The functions' search_path becomes the one the clients set\n"
	"-- (ledger_search_path_sql and ledger_async): when the two differ, the\n"
	"-- server re-plans every statement inside a function on every call.\n"
	"DO $$\n"
	"DECLARE\n"
	"  path text := pg_catalog.format('pg_catalog, %I, pg_temp', pg_catalog.current_schema());\n"
	"  fn text;\n"
	"BEGIN\n"
	"  FOREACH fn IN ARRAY ARRAY['close_attempts(text, text)',\n"
	"      'claim_task(text, text, bigint, text, boolean, text, text, jsonb, integer)',\n"
	"      'cancel_task(text)', 'reap_tasks(bigint, bigint, integer, boolean)',\n"
	"      'dead_letter_task(text, text, text)'] LOOP\n"
	"    EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = %s', fn, path);\n"
	"  END LOOP;\n"
	"END $$;\n";

const struct ledger_migration ledger_migrations[] = {
	{1, "initial: tasks, attempts, workers, claim/cancel/reap/dead_letter functions",
	 migration_1},
	{2, "faster: inlinable epoch_ms, HOT heartbeats, CHECKs in PL/pgSQL, one search_path",
	 migration_2},
};

const size_t ledger_migrations_len = ARRAY_SIZE(ledger_migrations);

/* Both halves of the advisory lock key: a constant for "dtq migrations" and
 * the schema's hash, so that ledgers in different schemas do not wait on
 * each other. */
#define MIGRATE_LOCK_CLASS 0x64747121 /* "dtq!" */

static int
exec_simple(PGconn *conn, const char *sql, char *err)
{
	PGresult *res = PQexec(conn, sql);
	int rc = ledger_result_error(res, conn, err);

	PQclear(res);
	return rc;
}

static int
exec_params(PGconn *conn, const char *sql, int n, const char *const *values, PGresult **out,
	    char *err)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
	int rc = ledger_result_error(res, conn, err);

	if (rc < 0 || !out)
		PQclear(res);
	else
		*out = res;
	return rc;
}

static void
rollback(PGconn *conn)
{
	PQclear(PQexec(conn, "ROLLBACK"));
}

int
ledger_schema_version(struct ledger *l, int *version, char *err)
{
	const char *params[1] = {l->schema};
	PGresult *res = NULL;
	int rc;

	*version = 0;
	rc = exec_params(l->conn,
			 "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL",
			 1, params, &res, err);
	if (rc < 0)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	rc = exec_params(l->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
			 NULL, &res, err);
	if (rc < 0)
		return rc;
	*version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

int
ledger_check_version(struct ledger *l, char *err)
{
	int version, rc;

	rc = ledger_schema_version(l, &version, err);
	if (rc < 0)
		return rc;
	if (version == LEDGER_SCHEMA_VERSION)
		return 0;
	if (version == 0)
		return dtq_fail(err, DTQ_ESTATE,
				"the ledger schema \"%s\" is not set up (version 0, this dtq needs %d):"
				" run `dtq migrate`",
				l->schema, LEDGER_SCHEMA_VERSION);
	if (version < LEDGER_SCHEMA_VERSION)
		return dtq_fail(err, DTQ_ESTATE,
				"the ledger schema \"%s\" is at version %d, this dtq needs %d:"
				" run `dtq migrate`",
				l->schema, version, LEDGER_SCHEMA_VERSION);
	return dtq_fail(err, DTQ_ESTATE,
			"the ledger schema \"%s\" is at version %d, newer than this dtq knows (%d):"
			" upgrade dtq",
			l->schema, version, LEDGER_SCHEMA_VERSION);
}

/* Opens a transaction holding the migration lock, with the schema and its
 * bookkeeping table in place; returns the version found. */
static int
begin_locked(struct ledger *l, int *version, char *err)
{
	char lockkey[16];
	const char *params[2] = {lockkey, l->schema};
	char *quoted = NULL, *sql = NULL;
	int rc;

	snprintf(lockkey, sizeof(lockkey), "%d", MIGRATE_LOCK_CLASS);
	rc = exec_simple(l->conn, "BEGIN", err);
	if (rc < 0)
		return rc;
	rc = exec_params(l->conn, "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))", 2,
			 params, NULL, err);
	if (rc < 0)
		goto fail;
	quoted = PQescapeIdentifier(l->conn, l->schema, strlen(l->schema));
	if (!quoted) {
		rc = dtq_fail(err, DTQ_EINVAL, "cannot quote schema name: %s",
			      PQerrorMessage(l->conn));
		goto fail;
	}
	sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s;\n"
			/* CREATE puts objects in the first schema of the path */
			"SET LOCAL search_path TO %s, pg_catalog, pg_temp;\n"
			"CREATE TABLE IF NOT EXISTS schema_migrations (\n"
			"  version integer PRIMARY KEY,\n"
			"  name text NOT NULL,\n"
			"  applied_at timestamptz NOT NULL DEFAULT now())",
			quoted, quoted);
	rc = exec_simple(l->conn, sql, err);
	if (rc < 0)
		goto fail;
	rc = ledger_schema_version(l, version, err);
	if (rc < 0)
		goto fail;
	PQfreemem(quoted);
	free(sql);
	return 0;
fail:
	rollback(l->conn);
	PQfreemem(quoted);
	free(sql);
	return rc;
}

static int
apply_one(struct ledger *l, const struct ledger_migration *m, char *err)
{
	char version[16];
	const char *params[2] = {version, m->name};
	int rc;

	rc = exec_simple(l->conn, m->sql, err);
	if (rc < 0)
		return rc;
	snprintf(version, sizeof(version), "%d", m->version);
	return exec_params(l->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
			   2, params, NULL, err);
}

int
ledger_migrate(struct ledger *l, int *from, int *to, char *err)
{
	return ledger_migrate_to(l, LEDGER_SCHEMA_VERSION, from, to, err);
}

int
ledger_migrate_to(struct ledger *l, int target, int *from, int *to, char *err)
{
	char why[DTQ_ERRLEN];
	int version = 0, first = -1, rc;
	size_t i;

	if (target < 1 || target > LEDGER_SCHEMA_VERSION)
		return dtq_fail(err, DTQ_EINVAL, "no migration %d (this dtq knows 1 to %d)", target,
				LEDGER_SCHEMA_VERSION);
	for (i = 0; i < ledger_migrations_len && ledger_migrations[i].version <= target; i++) {
		const struct ledger_migration *m = &ledger_migrations[i];

		rc = begin_locked(l, &version, err);
		if (rc < 0)
			return rc;
		if (first < 0)
			first = version;
		if (version > LEDGER_SCHEMA_VERSION) {
			rollback(l->conn);
			return dtq_fail(err, DTQ_ESTATE,
					"the ledger schema \"%s\" is at version %d, newer than this"
					" dtq knows (%d): upgrade dtq",
					l->schema, version, LEDGER_SCHEMA_VERSION);
		}
		if (version >= m->version) {
			rc = exec_simple(l->conn, "COMMIT", err);
			if (rc < 0)
				return rc;
			continue;
		}
		log_info("ledger: applying migration %d (%s) to schema %s", m->version, m->name,
			 l->schema);
		rc = apply_one(l, m, why);
		if (rc < 0) {
			rollback(l->conn);
			return dtq_fail(err, -rc, "migration %d failed, nothing of it was applied: %s",
					m->version, why);
		}
		rc = exec_simple(l->conn, "COMMIT", err);
		if (rc < 0)
			return rc;
		version = m->version;
	}
	if (from)
		*from = first < 0 ? version : first;
	if (to)
		*to = version;
	return 0;
}

int
ledger_migrations_applied(struct ledger *l, struct ledger_applied **out, size_t *n, char *err)
{
	PGresult *res = NULL;
	int version, rc, i, rows;

	*out = NULL;
	*n = 0;
	rc = ledger_schema_version(l, &version, err);
	if (rc < 0 || version == 0)
		return rc;
	rc = exec_params(l->conn,
			 "SELECT version, name, epoch_ms(applied_at) FROM schema_migrations"
			 " ORDER BY version",
			 0, NULL, &res, err);
	if (rc < 0)
		return rc;
	rows = PQntuples(res);
	*out = xcalloc((size_t)rows, sizeof(**out));
	for (i = 0; i < rows; i++) {
		(*out)[i].version = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
		(*out)[i].name = xstrdup(PQgetvalue(res, i, 1));
		(*out)[i].applied_at = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	}
	*n = (size_t)rows;
	PQclear(res);
	return 0;
}

void
ledger_applied_free(struct ledger_applied *a, size_t n)
{
	size_t i;

	if (!a)
		return;
	for (i = 0; i < n; i++)
		free(a[i].name);
	free(a);
}
