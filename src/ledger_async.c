/* ledger_async.c - ledger operations on the pg_async pool (see ledger_async.h).
 *
 * The SQL, the parameter builders and the parsers are the ledger module's:
 * this file only carries them over the asynchronous client and turns the
 * pool's statuses into the ledger's DTQ_E* codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/ledger_async.h"

struct ledger_async {
	struct pg_async_pool *pool;
};

enum op_kind {
	OP_CLAIM,
	OP_HEARTBEAT,
	OP_COMPLETE,
	OP_RELEASE,
	OP_DEAD_LETTER,
	OP_WORKER,
	OP_REAP,
	OP_MARK_SENT,
};

struct op {
	enum op_kind kind;
	union {
		ledger_async_claim_cb claim;
		ledger_async_heartbeat_cb heartbeat;
		ledger_async_complete_cb complete;
		ledger_async_dead_letter_cb dead_letter;
		ledger_async_outcome_cb outcome;
		ledger_async_reap_cb reap;
	} cb;
	void *user_data;
};

void
ledger_async_opts_from_config(const struct dtq_config *cfg, struct pg_async_opts *o)
{
	pg_async_opts_init(o);
	o->conninfo = cfg->ledger_dsn;
	o->pool_size = (int)cfg->ledger_pool_size;
	o->pipeline_depth = (int)cfg->ledger_pipeline_depth;
	o->statement_timeout_ms = cfg->ledger_timeout;
	o->connect_timeout_ms = cfg->ledger_connect_timeout;
}

/* search_path without a connection to quote with: an identifier is quoted
 * by doubling its double quotes (the config allows [A-Za-z0-9_] anyway). */
static char *
search_path_sql(const char *schema)
{
	size_t n = strlen(schema), i, o = 0;
	char *quoted = xmalloc(2 * n + 3), *sql;

	quoted[o++] = '"';
	for (i = 0; i < n; i++) {
		if (schema[i] == '"')
			quoted[o++] = '"';
		quoted[o++] = schema[i];
	}
	quoted[o++] = '"';
	quoted[o] = '\0';
	sql = xasprintf("SET search_path TO pg_catalog, %s, pg_temp", quoted);
	free(quoted);
	return sql;
}

struct ledger_async *
ledger_async_new(struct ev_loop *loop, const struct pg_async_opts *o, const char *schema,
		 char *err)
{
	struct pg_async_opts opts = *o;
	struct ledger_async *la;
	char *sql;

	if (o->session_sql) {
		dtq_fail(err, DTQ_EINVAL, "ledger_async: session_sql is the ledger's own");
		return NULL;
	}
	if (!schema || !*schema || strlen(schema) > 63) {
		dtq_fail(err, DTQ_EINVAL, "ledger_async: bad schema name");
		return NULL;
	}
	sql = search_path_sql(schema);
	opts.session_sql = sql;
	la = xcalloc(1, sizeof(*la));
	la->pool = pg_async_pool_new(loop, &opts, err);
	free(sql);
	if (!la->pool) {
		free(la);
		return NULL;
	}
	return la;
}

void
ledger_async_free(struct ledger_async *la)
{
	if (!la)
		return;
	pg_async_pool_free(la->pool);
	free(la);
}

struct pg_async_pool *
ledger_async_pool(struct ledger_async *la)
{
	return la->pool;
}

bool
ledger_async_retryable(int rc)
{
	return rc == -DTQ_ENET || rc == -DTQ_ETIMEOUT;
}

/* The pool's verdict as the ledger's code; a server error goes through the
 * ledger's own classification (unmigrated schema, invalid input...). */
static int
status_rc(enum pg_async_status st, const PGresult *res, const char *errmsg, char *err)
{
	switch (st) {
	case PG_ASYNC_OK:
		return 0;
	case PG_ASYNC_ESQL:
		return res ? ledger_result_error(res, NULL, err)
			   : dtq_fail(err, DTQ_EREMOTE, "ledger: %s", errmsg);
	case PG_ASYNC_ERETRY:
		return dtq_fail(err, DTQ_ENET, "ledger: %s", errmsg);
	case PG_ASYNC_ETIMEOUT:
		return dtq_fail(err, DTQ_ETIMEOUT, "ledger: %s", errmsg);
	case PG_ASYNC_ECLOSED:
		break;
	}
	return dtq_fail(err, DTQ_ESTATE, "ledger: client closed");
}

static void
op_done(enum pg_async_status st, PGresult *res, const char *errmsg, void *user_data)
{
	struct op *op = user_data;
	char err[DTQ_ERRLEN] = "";
	int rc = status_rc(st, res, errmsg, err);

	switch (op->kind) {
	case OP_CLAIM: {
		struct ledger_claim_res out = {0};

		if (rc == 0)
			rc = ledger_claim_parse(res, &out, err);
		op->cb.claim(rc, &out, rc ? err : NULL, op->user_data);
		ledger_claim_res_cleanup(&out);
		break;
	}
	case OP_HEARTBEAT: {
		struct ledger_heartbeat_res out = {0};

		if (rc == 0)
			rc = ledger_heartbeat_parse(res, &out, err);
		op->cb.heartbeat(rc, &out, rc ? err : NULL, op->user_data);
		break;
	}
	case OP_COMPLETE: {
		struct ledger_complete_res out = {0};

		if (rc == 0)
			rc = ledger_complete_parse(res, &out, err);
		op->cb.complete(rc, &out, rc ? err : NULL, op->user_data);
		break;
	}
	case OP_RELEASE:
	case OP_MARK_SENT:
	case OP_WORKER: {
		enum ledger_outcome out = LEDGER_OK;

		if (rc == 0 && op->kind == OP_RELEASE)
			rc = ledger_release_parse(res, &out, err);
		else if (rc == 0 && op->kind == OP_MARK_SENT)
			rc = ledger_mark_sent_parse(res, &out, err);
		else if (rc == 0)
			rc = ledger_worker_parse(res, &out, err);
		op->cb.outcome(rc, out, rc ? err : NULL, op->user_data);
		break;
	}
	case OP_REAP: {
		struct ledger_reap_res out = {0};

		if (rc == 0)
			rc = ledger_reap_parse(res, &out, err);
		op->cb.reap(rc, &out, rc ? err : NULL, op->user_data);
		ledger_reap_res_cleanup(&out);
		break;
	}
	case OP_DEAD_LETTER: {
		struct ledger_dead_letter_res out = {0};

		if (rc == 0)
			rc = ledger_dead_letter_parse(res, &out, err);
		op->cb.dead_letter(rc, &out, rc ? err : NULL, op->user_data);
		ledger_dead_letter_res_cleanup(&out);
		break;
	}
	}
	free(op);
}

/* Sends a built statement, prepared once per connection: the server then
 * skips parsing and planning it (most of its cost for the short ledger
 * statements). pg_async copies the parameters, so they are released here
 * whatever happens. */
static int
op_send(struct ledger_async *la, const char *sql, struct ledger_params *p, int built,
	struct op *op, char *err)
{
	int rc = built;

	if (rc == 0)
		rc = pg_async_exec_prepared(la->pool, sql, p->n, p->values, p->lengths, p->formats,
					    ledger_result_format(sql), 0, op_done, op, err);
	ledger_params_cleanup(p);
	if (rc < 0)
		free(op);
	return rc;
}

static struct op *
op_new(enum op_kind kind, void *user_data)
{
	struct op *op = xcalloc(1, sizeof(*op));

	op->kind = kind;
	op->user_data = user_data;
	return op;
}

int
ledger_async_claim(struct ledger_async *la, const struct ledger_claim_req *req,
		   ledger_async_claim_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_CLAIM, user_data);
	struct ledger_params p = {0};

	op->cb.claim = cb;
	return op_send(la, ledger_sql_claim, &p, ledger_claim_params(&p, req, err), op, err);
}

int
ledger_async_heartbeat(struct ledger_async *la, const struct ledger_heartbeat_req *req,
		       ledger_async_heartbeat_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_HEARTBEAT, user_data);
	struct ledger_params p = {0};

	op->cb.heartbeat = cb;
	return op_send(la, ledger_sql_heartbeat, &p, ledger_heartbeat_params(&p, req, err), op,
		       err);
}

int
ledger_async_complete(struct ledger_async *la, const struct ledger_complete_req *req,
		      ledger_async_complete_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_COMPLETE, user_data);
	struct ledger_params p = {0};

	op->cb.complete = cb;
	return op_send(la, ledger_sql_complete, &p, ledger_complete_params(&p, req, err), op, err);
}

int
ledger_async_release(struct ledger_async *la, const struct ledger_release_req *req,
		     ledger_async_outcome_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_RELEASE, user_data);
	struct ledger_params p = {0};

	op->cb.outcome = cb;
	return op_send(la, ledger_sql_release, &p, ledger_release_params(&p, req, err), op, err);
}

int
ledger_async_dead_letter(struct ledger_async *la, const struct ledger_dead_letter_req *req,
			 ledger_async_dead_letter_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_DEAD_LETTER, user_data);
	struct ledger_params p = {0};

	op->cb.dead_letter = cb;
	return op_send(la, ledger_sql_dead_letter, &p, ledger_dead_letter_params(&p, req, err), op,
		       err);
}

int
ledger_async_worker_register(struct ledger_async *la, const struct ledger_worker_req *req,
			     ledger_async_outcome_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_WORKER, user_data);
	struct ledger_params p = {0};

	op->cb.outcome = cb;
	return op_send(la, ledger_sql_worker_register, &p,
		       ledger_worker_register_params(&p, req, err), op, err);
}

int
ledger_async_worker_heartbeat(struct ledger_async *la, const struct ledger_worker_req *req,
			      ledger_async_outcome_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_WORKER, user_data);
	struct ledger_params p = {0};

	op->cb.outcome = cb;
	return op_send(la, ledger_sql_worker_heartbeat, &p,
		       ledger_worker_heartbeat_params(&p, req, err), op, err);
}

int
ledger_async_reap(struct ledger_async *la, const struct ledger_reap_req *req,
		  ledger_async_reap_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_REAP, user_data);
	struct ledger_params p = {0};

	op->cb.reap = cb;
	return op_send(la, ledger_sql_reap, &p, ledger_reap_params(&p, req, err), op, err);
}

int
ledger_async_mark_sent(struct ledger_async *la, const struct ledger_mark_sent_req *req,
		       ledger_async_outcome_cb cb, void *user_data, char *err)
{
	struct op *op = op_new(OP_MARK_SENT, user_data);
	struct ledger_params p = {0};

	op->cb.outcome = cb;
	return op_send(la, ledger_sql_mark_sent, &p, ledger_mark_sent_params(&p, req, err), op,
		       err);
}
