/* ledger_bench.c - ledger cycles per second: claim -> heartbeat -> complete.
 *
 * Over keys submitted beforehand (not timed), it runs the worker's cycle
 *   - the naive way: the ledger module's blocking calls on one connection,
 *     one statement (so one transaction) per step, one key after the other;
 *   - asynchronously: ledger_async on a pg_async pool of 1, 4 and 16
 *     connections, with and without libpq pipelining, with `concurrency`
 *     cycles in flight at once (a worker with that many task slots);
 * and prints cycles/s, latency percentiles and the ratio to the naive way.
 * With --server-pid (the postmaster's pid, on this machine) it also prints
 * the CPU time the server (postmaster and all its processes) and this
 * client spent per cycle: on a shared machine that is steadier than
 * cycles/s, and it says where the time goes.
 * Every cycle must answer CLAIMED / OK / OK, and every key must end
 * succeeded, else the run counts as failed and the exit code is 1.
 *
 * Usage: ledger_bench --dsn CONNINFO [--schema S] [--keys N] [--naive-keys N] [--seconds S]
 *                     [--conns 1,4,16] [--depths 1,8] [--concurrency N] [--raw-seconds S]
 *                     [--server-pid PID]
 * Run it through tests/bench/ledger_bench.sh, which starts a PostgreSQL.
 */
#include <dirent.h>
#include <getopt.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtq/ledger.h"
#include "dtq/ledger_async.h"
#include "dtq/log.h"

#define SHA "1111111111111111111111111111111111111111111111111111111111111111"
#define MAX_RUNS 32

struct opts {
	const char *dsn;
	const char *schema;
	int keys;        /* per asynchronous run */
	int naive_keys;
	double seconds;  /* per run at most (new cycles stop starting) */
	double raw_seconds; /* per raw run; 0: no raw runs */
	int conns[8], nconns;
	int depths[8], ndepths;
	int concurrency;
	int server_pid;  /* postmaster, for CPU accounting; 0: none */
};

struct result {
	char mode[32];
	int conns, depth;
	int cycles, errors;
	double secs;
	double p50, p99; /* ms */
	double server_cpu, client_cpu; /* seconds over the run; < 0: not measured */
};

/* ---- CPU accounting ----
 * The server's CPU time: the postmaster's own and its reaped children's
 * (cutime/cstime), plus every live child's. Read before a run and at its
 * end while the run's backends are still connected. */

static int server_pid;

static double
ticks_to_s(unsigned long long t)
{
	return (double)t / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime (+ cutime + cstime with children), and the parent pid. */
static int
proc_cpu(int pid, bool children, double *cpu, int *ppid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	long long cut, cst;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command may hold spaces */
	if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
			 ppid, &ut, &st, &cut, &cst) != 5)
		return -1;
	*cpu = ticks_to_s(ut + st) + (children ? ticks_to_s((unsigned long long)(cut + cst)) : 0);
	return 0;
}

static double
server_cpu_now(void)
{
	double total, cpu;
	struct dirent *e;
	DIR *d;
	int ppid;

	if (!server_pid || proc_cpu(server_pid, true, &total, &ppid) < 0)
		return -1;
	d = opendir("/proc");
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		int pid = (int)strtol(e->d_name, NULL, 10);

		if (pid > 0 && proc_cpu(pid, false, &cpu, &ppid) == 0 && ppid == server_pid)
			total += cpu;
	}
	closedir(d);
	return total;
}

static double
client_cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

struct cpu_mark {
	double server, client;
};

static void
cpu_mark(struct cpu_mark *m)
{
	m->server = server_cpu_now();
	m->client = client_cpu_now();
}

static void
cpu_since(const struct cpu_mark *m, struct result *r)
{
	double srv = server_cpu_now();

	r->server_cpu = m->server < 0 || srv < 0 ? -1 : srv - m->server;
	r->client_cpu = client_cpu_now() - m->client;
}

struct bench;

struct cycle {
	struct bench *b;
	int key;
	int64_t fence;
	int64_t t0_us;
};

struct bench {
	struct ev_loop *loop;
	struct ledger_async *la;
	struct pg_async_pool *pool; /* raw runs */
	const char *prefix;
	int64_t deadline_us;        /* no new cycle starts after it */
	int next, end;
	int active;
	int done, errors;
	double *lat_ms;
	char first_error[DTQ_ERRLEN];
};

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
key_name(char *buf, size_t len, const char *prefix, int i)
{
	snprintf(buf, len, "bench/%s/%d", prefix, i);
}

/* ---- the asynchronous cycle ---- */

static void cycle_next(struct cycle *cy);

static void
cycle_fail(struct cycle *cy, const char *step, const char *what)
{
	struct bench *b = cy->b;

	if (!b->errors++)
		snprintf(b->first_error, sizeof(b->first_error), "%.20s: %.400s", step, what);
	cycle_next(cy);
}

static void
on_complete(int rc, const struct ledger_complete_res *res, const char *errmsg, void *ud)
{
	struct cycle *cy = ud;
	struct bench *b = cy->b;

	if (rc || res->outcome != LEDGER_OK || res->state != LEDGER_STATE_SUCCEEDED) {
		cycle_fail(cy, "complete", rc ? errmsg : ledger_outcome_name(res->outcome));
		return;
	}
	b->lat_ms[b->done++] = (double)(now_us() - cy->t0_us) / 1000.0;
	cycle_next(cy);
}

static void
on_heartbeat(int rc, const struct ledger_heartbeat_res *res, const char *errmsg, void *ud)
{
	struct cycle *cy = ud;
	struct ledger_complete_req req = {0};
	char key[128], err[DTQ_ERRLEN];

	if (rc || res->outcome != LEDGER_OK) {
		cycle_fail(cy, "heartbeat", rc ? errmsg : ledger_outcome_name(res->outcome));
		return;
	}
	key_name(key, sizeof(key), cy->b->prefix, cy->key);
	req.key = key;
	req.fence = cy->fence;
	req.state = LEDGER_STATE_SUCCEEDED;
	req.has_exit_code = true;
	if (ledger_async_complete(cy->b->la, &req, on_complete, cy, err) < 0)
		cycle_fail(cy, "complete", err);
}

static void
on_claim(int rc, struct ledger_claim_res *res, const char *errmsg, void *ud)
{
	struct cycle *cy = ud;
	struct ledger_heartbeat_req req = {0};
	char key[128], err[DTQ_ERRLEN];

	if (rc || res->outcome != LEDGER_CLAIMED) {
		cycle_fail(cy, "claim", rc ? errmsg : ledger_outcome_name(res->outcome));
		return;
	}
	cy->fence = res->task.fence;
	key_name(key, sizeof(key), cy->b->prefix, cy->key);
	req.key = key;
	req.fence = cy->fence;
	req.lease_ms = 60000;
	if (ledger_async_heartbeat(cy->b->la, &req, on_heartbeat, cy, err) < 0)
		cycle_fail(cy, "heartbeat", err);
}

static void
cycle_next(struct cycle *cy)
{
	struct bench *b = cy->b;
	struct ledger_claim_req req = {0};
	char key[128], err[DTQ_ERRLEN];

	if (b->next >= b->end || now_us() > b->deadline_us) {
		if (--b->active == 0)
			ev_break(b->loop, EVBREAK_ALL);
		return;
	}
	cy->key = b->next++;
	cy->t0_us = now_us();
	key_name(key, sizeof(key), b->prefix, cy->key);
	req.key = key;
	req.owner = "bench-worker";
	req.lease_ms = 60000;
	req.message_id = key;
	if (ledger_async_claim(b->la, &req, on_claim, cy, err) < 0)
		cycle_fail(cy, "claim", err);
}

/* ---- setup: submit the keys (pipelined, not timed) ---- */

struct submit_state {
	struct ev_loop *loop;
	int pending, errors;
	char first_error[DTQ_ERRLEN];
};

static void
on_submit(enum pg_async_status st, PGresult *res, const char *errmsg, void *ud)
{
	struct submit_state *s = ud;
	struct ledger_submit_res out;
	char err[DTQ_ERRLEN];

	if (st != PG_ASYNC_OK || ledger_submit_parse(res, &out, err) < 0) {
		if (!s->errors++)
			snprintf(s->first_error, sizeof(s->first_error), "%s",
				 st != PG_ASYNC_OK ? errmsg : err);
	} else {
		ledger_submit_res_cleanup(&out);
	}
	if (--s->pending == 0)
		ev_break(s->loop, EVBREAK_ALL);
}

static int
submit_keys(struct ev_loop *loop, const struct opts *o, const char *prefix, int n)
{
	struct pg_async_opts po;
	struct pg_async_pool *pool;
	struct submit_state s = {loop, 0, 0, ""};
	char *path = xasprintf("SET search_path TO pg_catalog, \"%s\", pg_temp", o->schema);
	char err[DTQ_ERRLEN], key[128];
	int i;

	pg_async_opts_init(&po);
	po.conninfo = o->dsn;
	po.pool_size = 2;
	po.pipeline_depth = 64;
	po.session_sql = path;
	po.statement_timeout_ms = 120000;
	pool = pg_async_pool_new(loop, &po, err);
	free(path);
	if (!pool) {
		fprintf(stderr, "ledger_bench: %s\n", err);
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct ledger_submit_req req = {.task_name = "dtq.exec", .payload_sha256 = SHA,
						.max_attempts = 3};
		struct ledger_params p;

		key_name(key, sizeof(key), prefix, i);
		req.key = key;
		if (ledger_submit_params(&p, &req, err) < 0 ||
		    pg_async_exec_params(pool, ledger_sql_submit, p.n, p.values, p.lengths, p.formats,
					 0, 0, on_submit, &s, err) < 0) {
			fprintf(stderr, "ledger_bench: submit: %s\n", err);
			ledger_params_cleanup(&p);
			pg_async_pool_free(pool);
			return -1;
		}
		ledger_params_cleanup(&p);
		s.pending++;
	}
	if (s.pending)
		ev_run(loop, 0);
	pg_async_pool_free(pool);
	if (s.errors) {
		fprintf(stderr, "ledger_bench: %d submits failed, first: %s\n", s.errors,
			s.first_error);
		return -1;
	}
	return 0;
}

/* ---- runs ---- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
percentiles(double *v, int n, struct result *r)
{
	if (n == 0)
		return;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	r->p50 = v[n / 2];
	r->p99 = v[(int)((double)n * 0.99) < n ? (int)((double)n * 0.99) : n - 1];
}

static bool
pool_all_up(struct ledger_async *la, int want)
{
	struct pg_async_stats st;

	pg_async_pool_stats(ledger_async_pool(la), &st);
	return st.connected == want;
}

static void
idle_tick(struct ev_loop *l, ev_timer *w, int revents)
{
	UNUSED(w);
	UNUSED(revents);
	ev_break(l, EVBREAK_ONE);
}

static int
run_async(struct ev_loop *loop, const struct opts *o, int conns, int depth, struct result *r)
{
	struct pg_async_opts po;
	struct cpu_mark cpu;
	struct bench b = {0};
	struct cycle *cycles;
	char prefix[64], err[DTQ_ERRLEN];
	int64_t t0, deadline;
	ev_timer tick;
	int i;

	snprintf(prefix, sizeof(prefix), "async-c%d-d%d", conns, depth);
	if (submit_keys(loop, o, prefix, o->keys) < 0)
		return -1;
	pg_async_opts_init(&po);
	po.conninfo = o->dsn;
	po.pool_size = conns;
	po.pipeline_depth = depth;
	po.statement_timeout_ms = 60000;
	b.loop = loop;
	b.prefix = prefix;
	b.end = o->keys;
	b.lat_ms = xcalloc((size_t)o->keys, sizeof(double));
	b.la = ledger_async_new(loop, &po, o->schema, err);
	if (!b.la) {
		fprintf(stderr, "ledger_bench: %s\n", err);
		free(b.lat_ms);
		return -1;
	}
	/* connect first: the timing is about statements, not connection set-up */
	ev_timer_init(&tick, idle_tick, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	deadline = dtq_now_ms() + 10000;
	while (!pool_all_up(b.la, conns) && dtq_now_ms() < deadline)
		ev_run(loop, 0);
	ev_timer_stop(loop, &tick);

	cycles = xcalloc((size_t)o->concurrency, sizeof(*cycles));
	cpu_mark(&cpu);
	t0 = now_us();
	b.deadline_us = t0 + (int64_t)(o->seconds * 1e6);
	b.active = o->concurrency;
	for (i = 0; i < o->concurrency; i++) {
		cycles[i].b = &b;
		cycle_next(&cycles[i]);
	}
	if (b.active > 0)
		ev_run(loop, 0);
	r->secs = (double)(now_us() - t0) / 1e6;
	cpu_since(&cpu, r);
	snprintf(r->mode, sizeof(r->mode), "async%s", depth > 1 ? " pipelined" : "");
	r->conns = conns;
	r->depth = depth;
	r->cycles = b.done;
	r->errors = b.errors;
	percentiles(b.lat_ms, b.done, r);
	if (b.errors)
		fprintf(stderr, "ledger_bench: %s: %d cycles failed, first: %s\n", prefix, b.errors,
			b.first_error);
	ledger_async_free(b.la);
	free(cycles);
	free(b.lat_ms);
	return 0;
}

static int
run_naive(struct ev_loop *loop, const struct opts *o, struct result *r)
{
	struct cpu_mark cpu;
	struct ledger *l;
	char key[128], err[DTQ_ERRLEN];
	double *lat = xcalloc((size_t)o->naive_keys, sizeof(double));
	int64_t t0;
	int i;

	if (submit_keys(loop, o, "naive", o->naive_keys) < 0 ||
	    ledger_open(o->dsn, o->schema, 0, &l, err) < 0) {
		free(lat);
		return -1;
	}
	memset(r, 0, sizeof(*r));
	cpu_mark(&cpu);
	t0 = now_us();
	for (i = 0; i < o->naive_keys && now_us() - t0 < (int64_t)(o->seconds * 1e6); i++) {
		struct ledger_claim_req cr = {.owner = "bench-worker", .lease_ms = 60000};
		struct ledger_claim_res cres;
		struct ledger_heartbeat_req hr = {.lease_ms = 60000};
		struct ledger_heartbeat_res hres;
		struct ledger_complete_req qr = {.state = LEDGER_STATE_SUCCEEDED, .has_exit_code = true};
		struct ledger_complete_res qres;
		int64_t c0 = now_us();

		key_name(key, sizeof(key), "naive", i);
		cr.key = hr.key = qr.key = cr.message_id = key;
		if (ledger_claim(l, &cr, &cres, err) < 0 || cres.outcome != LEDGER_CLAIMED) {
			r->errors++;
			ledger_claim_res_cleanup(&cres);
			continue;
		}
		hr.fence = qr.fence = cres.task.fence;
		ledger_claim_res_cleanup(&cres);
		if (ledger_heartbeat(l, &hr, &hres, err) < 0 || hres.outcome != LEDGER_OK ||
		    ledger_complete(l, &qr, &qres, err) < 0 || qres.outcome != LEDGER_OK) {
			r->errors++;
			continue;
		}
		lat[r->cycles++] = (double)(now_us() - c0) / 1000.0;
	}
	r->secs = (double)(now_us() - t0) / 1e6;
	cpu_since(&cpu, r);
	snprintf(r->mode, sizeof(r->mode), "naive blocking");
	r->conns = 1;
	r->depth = 1;
	percentiles(lat, r->cycles, r);
	free(lat);
	ledger_close(l);
	return 0;
}

/* ---- raw client: the same three round trips with trivial statements ----
 * Separates what the client and the protocol cost from what the ledger's
 * statements cost the server. */

static void raw_next(struct cycle *cy);

static void
raw_step(enum pg_async_status st, PGresult *res, const char *errmsg, void *ud)
{
	struct cycle *cy = ud;
	struct bench *b = cy->b;
	const char *vals[1] = {"x"};
	char err[DTQ_ERRLEN];

	UNUSED(res);
	if (st != PG_ASYNC_OK) {
		if (!b->errors++)
			snprintf(b->first_error, sizeof(b->first_error), "%s", errmsg);
		raw_next(cy);
		return;
	}
	if (++cy->fence < 3) {
		if (pg_async_exec_params(b->pool, "SELECT $1::text", 1, vals, NULL, NULL, 0, 0, raw_step,
					 cy, err) < 0)
			b->errors++;
		return;
	}
	if (b->done < b->end)
		b->lat_ms[b->done] = (double)(now_us() - cy->t0_us) / 1000.0;
	b->done++;
	raw_next(cy);
}

static void
raw_next(struct cycle *cy)
{
	struct bench *b = cy->b;
	const char *vals[1] = {"x"};
	char err[DTQ_ERRLEN];

	if (now_us() > b->deadline_us) {
		if (--b->active == 0)
			ev_break(b->loop, EVBREAK_ALL);
		return;
	}
	cy->fence = 0;
	cy->t0_us = now_us();
	if (pg_async_exec_params(b->pool, "SELECT $1::text", 1, vals, NULL, NULL, 0, 0, raw_step, cy,
				 err) < 0) {
		b->errors++;
		if (--b->active == 0)
			ev_break(b->loop, EVBREAK_ALL);
	}
}

static int
run_raw_async(struct ev_loop *loop, const struct opts *o, int conns, int depth, struct result *r)
{
	struct pg_async_opts po;
	struct cpu_mark cpu;
	struct bench b = {0};
	struct cycle *cycles;
	char err[DTQ_ERRLEN];
	int64_t t0, deadline;
	ev_timer tick;
	int i;

	pg_async_opts_init(&po);
	po.conninfo = o->dsn;
	po.pool_size = conns;
	po.pipeline_depth = depth;
	b.loop = loop;
	b.end = 1000000;
	b.lat_ms = xcalloc((size_t)b.end, sizeof(double));
	b.pool = pg_async_pool_new(loop, &po, err);
	if (!b.pool) {
		fprintf(stderr, "ledger_bench: %s\n", err);
		free(b.lat_ms);
		return -1;
	}
	ev_timer_init(&tick, idle_tick, 0.01, 0.01);
	ev_timer_start(loop, &tick);
	deadline = dtq_now_ms() + 10000;
	for (;;) {
		struct pg_async_stats st;

		pg_async_pool_stats(b.pool, &st);
		if (st.connected == conns || dtq_now_ms() > deadline)
			break;
		ev_run(loop, 0);
	}
	ev_timer_stop(loop, &tick);
	cycles = xcalloc((size_t)o->concurrency, sizeof(*cycles));
	cpu_mark(&cpu);
	t0 = now_us();
	b.deadline_us = t0 + (int64_t)(o->raw_seconds * 1e6);
	b.active = o->concurrency;
	for (i = 0; i < o->concurrency; i++) {
		cycles[i].b = &b;
		raw_next(&cycles[i]);
	}
	if (b.active > 0)
		ev_run(loop, 0);
	r->secs = (double)(now_us() - t0) / 1e6;
	cpu_since(&cpu, r);
	snprintf(r->mode, sizeof(r->mode), "raw async%s", depth > 1 ? " pipelined" : "");
	r->conns = conns;
	r->depth = depth;
	r->cycles = b.done;
	r->errors = b.errors;
	percentiles(b.lat_ms, b.done < b.end ? b.done : b.end, r);
	pg_async_pool_free(b.pool);
	free(cycles);
	free(b.lat_ms);
	return 0;
}

static int
run_raw_naive(const struct opts *o, struct result *r)
{
	struct cpu_mark cpu;
	PGconn *c = PQconnectdb(o->dsn);
	const char *vals[1] = {"x"};
	enum { MAXLAT = 1000000 };
	double *lat = xcalloc(MAXLAT, sizeof(double));
	int64_t t0, limit = (int64_t)(o->raw_seconds * 1e6);
	int i;

	memset(r, 0, sizeof(*r));
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "ledger_bench: %s", PQerrorMessage(c));
		PQfinish(c);
		free(lat);
		return -1;
	}
	cpu_mark(&cpu);
	t0 = now_us();
	while (now_us() - t0 < limit && r->cycles < MAXLAT) {
		int64_t c0 = now_us();

		for (i = 0; i < 3; i++) {
			PGresult *res = PQexecParams(c, "SELECT $1::text", 1, NULL, vals, NULL, NULL, 0);

			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				r->errors++;
			PQclear(res);
		}
		lat[r->cycles++] = (double)(now_us() - c0) / 1000.0;
	}
	r->secs = (double)(now_us() - t0) / 1e6;
	cpu_since(&cpu, r);
	snprintf(r->mode, sizeof(r->mode), "raw naive blocking");
	r->conns = 1;
	r->depth = 1;
	percentiles(lat, r->cycles, r);
	free(lat);
	PQfinish(c);
	return 0;
}

/* Every key of every run must have ended succeeded. */
static int
check_ledger(const struct opts *o, int expected)
{
	struct ledger *l;
	struct ledger_stats st;
	char err[DTQ_ERRLEN];
	int rc;

	if (ledger_open(o->dsn, o->schema, 0, &l, err) < 0 || ledger_stats(l, &st, err) < 0) {
		fprintf(stderr, "ledger_bench: %s\n", err);
		return -1;
	}
	ledger_close(l);
	rc = st.count[LEDGER_STATE_SUCCEEDED] == expected && st.multi_exec_keys == 0 ? 0 : -1;
	printf("ledger check: %lld succeeded (expected %d), %lld running, %lld queued, "
	       "%lld keys executed more than once: %s\n",
	       (long long)st.count[LEDGER_STATE_SUCCEEDED], expected,
	       (long long)st.count[LEDGER_STATE_RUNNING], (long long)st.count[LEDGER_STATE_QUEUED],
	       (long long)st.multi_exec_keys, rc == 0 ? "ok" : "FAILED");
	return rc;
}

static int
parse_list(const char *s, int *v, int max)
{
	int n = 0;
	char *end;

	while (*s && n < max) {
		long x = strtol(s, &end, 10);

		if (end == s || x < 1 || x > 1024)
			return -1;
		v[n++] = (int)x;
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"schema", required_argument, NULL, 's'},
		{"keys", required_argument, NULL, 'k'},
		{"naive-keys", required_argument, NULL, 'n'},
		{"conns", required_argument, NULL, 'c'},
		{"depths", required_argument, NULL, 'p'},
		{"concurrency", required_argument, NULL, 'C'},
		{"seconds", required_argument, NULL, 'S'},
		{"raw-seconds", required_argument, NULL, 'R'},
		{"server-pid", required_argument, NULL, 'P'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	o->schema = "dtq_bench";
	o->keys = 20000;
	o->naive_keys = 5000;
	o->seconds = 5;
	o->raw_seconds = 2;
	o->concurrency = 64;
	o->nconns = parse_list("1,4,16", o->conns, 8);
	o->ndepths = parse_list("1,8", o->depths, 8);
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o->dsn = optarg; break;
		case 's': o->schema = optarg; break;
		case 'k': o->keys = (int)strtol(optarg, NULL, 10); break;
		case 'n': o->naive_keys = (int)strtol(optarg, NULL, 10); break;
		case 'c': o->nconns = parse_list(optarg, o->conns, 8); break;
		case 'p': o->ndepths = parse_list(optarg, o->depths, 8); break;
		case 'C': o->concurrency = (int)strtol(optarg, NULL, 10); break;
		case 'S': o->seconds = strtod(optarg, NULL); break;
		case 'R': o->raw_seconds = strtod(optarg, NULL); break;
		case 'P': o->server_pid = (int)strtol(optarg, NULL, 10); break;
		default: return -1;
		}
	}
	if (!o->dsn || o->keys < 1 || o->naive_keys < 1 || o->nconns < 1 || o->ndepths < 1 ||
	    o->concurrency < 1 || o->seconds <= 0 || o->raw_seconds < 0)
		return -1;
	return 0;
}

static void
print_table(const struct result *r, int n)
{
	double naive_rate = r[0].cycles / r[0].secs;
	int i;

	printf("%-22s %5s %5s %7s %6s %9s %8s %8s %8s %10s %10s\n", "mode", "conns", "depth",
	       "cycles", "secs", "cycles/s", "p50 ms", "p99 ms", "x naive", "srv us/cyc",
	       "cli us/cyc");
	for (i = 0; i < n; i++) {
		double rate = r[i].cycles / r[i].secs;
		double per = r[i].cycles ? 1e6 / r[i].cycles : 0;

		printf("%-22s %5d %5d %7d %6.2f %9.0f %8.2f %8.2f %8.2f", r[i].mode, r[i].conns,
		       r[i].depth, r[i].cycles, r[i].secs, rate, r[i].p50, r[i].p99, rate / naive_rate);
		if (r[i].server_cpu >= 0)
			printf(" %10.0f", r[i].server_cpu * per);
		else
			printf(" %10s", "-");
		printf(" %10.0f\n", r[i].client_cpu * per);
	}
}

static int
prepare_schema(const struct opts *o)
{
	struct ledger *l;
	char err[DTQ_ERRLEN], *sql;
	PGresult *res;

	if (ledger_open(o->dsn, o->schema, 0, &l, err) < 0) {
		fprintf(stderr, "ledger_bench: %s\n", err);
		return -1;
	}
	sql = xasprintf("SET client_min_messages TO warning; DROP SCHEMA IF EXISTS \"%s\" CASCADE",
			o->schema);
	res = PQexec(l->conn, sql);
	free(sql);
	PQclear(res);
	if (ledger_migrate(l, NULL, NULL, err) < 0) {
		fprintf(stderr, "ledger_bench: migrate: %s\n", err);
		ledger_close(l);
		return -1;
	}
	ledger_close(l);
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o = {0};
	struct result res[MAX_RUNS], raw[MAX_RUNS];
	int nraw = 0;
	struct ev_loop *loop;
	int nres = 0, expected = 0, failed = 0, i, j;

	if (parse_opts(argc, argv, &o) < 0) {
		fprintf(stderr, "usage: ledger_bench --dsn CONNINFO [--schema S] [--keys N] "
				"[--naive-keys N] [--conns 1,4,16] [--depths 1,8] [--concurrency N] "
				"[--seconds S] [--raw-seconds S] [--server-pid PID]\n");
		return 2;
	}
	log_setup(LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	server_pid = o.server_pid;
	if (prepare_schema(&o) < 0)
		return 1;
	loop = ev_loop_new(EVFLAG_AUTO);

	if (run_naive(loop, &o, &res[nres]) < 0)
		return 1;
	expected += res[nres].cycles;
	failed += res[nres].errors;
	nres++;
	for (i = 0; i < o.nconns; i++) {
		for (j = 0; j < o.ndepths && nres < MAX_RUNS; j++) {
			if (run_async(loop, &o, o.conns[i], o.depths[j], &res[nres]) < 0)
				return 1;
			expected += res[nres].cycles;
			failed += res[nres].errors;
			nres++;
		}
	}

	if (o.raw_seconds > 0) {
		if (run_raw_naive(&o, &raw[nraw]) < 0)
			return 1;
		failed += raw[nraw++].errors;
		for (i = 0; i < o.nconns && o.conns[i] <= 4; i++) {
			for (j = 0; j < o.ndepths && nraw < MAX_RUNS; j++) {
				if (run_raw_async(loop, &o, o.conns[i], o.depths[j], &raw[nraw]) < 0)
					return 1;
				failed += raw[nraw++].errors;
			}
		}
	}

	printf("\nledger: claim -> heartbeat -> complete cycles (3 statements), %d in flight "
	       "for async\n", o.concurrency);
	print_table(res, nres);
	if (nraw) {
		printf("\nraw client: 3 x SELECT $1::text per cycle (no ledger work), %d in flight "
		       "for async\n", o.concurrency);
		print_table(raw, nraw);
	}
	if (check_ledger(&o, expected) < 0)
		failed++;
	ev_loop_destroy(loop);
	return failed ? 1 : 0;
}
