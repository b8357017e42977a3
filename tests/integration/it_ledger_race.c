/* it_ledger_race.c - concurrent claimers, each on its own connection,
 * released together by a barrier: a key is never claimed twice while its
 * lease is live. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dtq/log.h"
#include "ledger_fixture.h"

#define LEASE_MS 60000

struct claimer {
	pthread_t thread;
	struct ledger *l;
	pthread_barrier_t *barrier;
	char owner[32];
	const char *const *keys;  /* claimed in this order */
	size_t nkeys;
	int *claimed_by;          /* per key index: claims won (shared, atomic adds) */
	size_t *order;            /* indexes into keys, a permutation per thread */
	int outcomes[LEDGER_OUTCOME_COUNT];
	int errors;
	char err[DTQ_ERRLEN];
};

static void *
claimer_run(void *arg)
{
	struct claimer *c = arg;
	size_t i;

	pthread_barrier_wait(c->barrier);
	for (i = 0; i < c->nkeys; i++) {
		size_t k = c->order ? c->order[i] : i;
		struct ledger_claim_req req = {.key = c->keys[k], .owner = c->owner,
					       .lease_ms = LEASE_MS};
		struct ledger_claim_res res;

		if (ledger_claim(c->l, &req, &res, c->err) < 0) {
			c->errors++;
			continue;
		}
		c->outcomes[res.outcome]++;
		if (res.outcome == LEDGER_CLAIMED)
			__atomic_add_fetch(&c->claimed_by[k], 1, __ATOMIC_SEQ_CST);
		ledger_claim_res_cleanup(&res);
	}
	return NULL;
}

/* Starts n claimers on their own connections (opened before the barrier,
 * so that they really start together) and waits for them. */
static void
run_claimers(const char *schema, int n, const char *const *keys, size_t nkeys, int *claimed_by,
	     bool shuffle, int totals[LEDGER_OUTCOME_COUNT])
{
	struct claimer *cs = xcalloc((size_t)n, sizeof(*cs));
	pthread_barrier_t barrier;
	int i, j;
	size_t k;

	pthread_barrier_init(&barrier, NULL, (unsigned)n);
	for (i = 0; i < n; i++) {
		cs[i].l = fx_open(schema, false);
		cs[i].barrier = &barrier;
		snprintf(cs[i].owner, sizeof(cs[i].owner), "w-%d", i);
		cs[i].keys = keys;
		cs[i].nkeys = nkeys;
		cs[i].claimed_by = claimed_by;
		if (shuffle) {
			cs[i].order = xcalloc(nkeys, sizeof(size_t));
			for (k = 0; k < nkeys; k++)
				cs[i].order[k] = k;
			for (k = nkeys - 1; k > 0; k--) {
				size_t r = (size_t)rand() % (k + 1), tmp = cs[i].order[k];

				cs[i].order[k] = cs[i].order[r];
				cs[i].order[r] = tmp;
			}
		}
	}
	for (i = 0; i < n; i++)
		assert_int_equal(pthread_create(&cs[i].thread, NULL, claimer_run, &cs[i]), 0);
	for (i = 0; i < n; i++)
		pthread_join(cs[i].thread, NULL);
	memset(totals, 0, sizeof(int) * LEDGER_OUTCOME_COUNT);
	for (i = 0; i < n; i++) {
		if (cs[i].errors)
			fail_msg("claimer %d: %d errors, last: %s", i, cs[i].errors, cs[i].err);
		for (j = 0; j < LEDGER_OUTCOME_COUNT; j++)
			totals[j] += cs[i].outcomes[j];
		ledger_close(cs[i].l);
		free(cs[i].order);
	}
	pthread_barrier_destroy(&barrier);
	free(cs);
}

/* 64 claimers on one queued key: exactly one CLAIMED, 63 LEASED_ELSEWHERE. */
static void
test_64_claimers_one_key(void **state)
{
	struct fx *fx = *state;
	const char *keys[1] = {"the-one"};
	int claimed_by[1] = {0};
	int totals[LEDGER_OUTCOME_COUNT];

	fx_submit(fx->l, "the-one", 3);
	run_claimers(fx->schema, 64, keys, 1, claimed_by, false, totals);
	assert_int_equal(claimed_by[0], 1);
	assert_int_equal(totals[LEDGER_CLAIMED], 1);
	assert_int_equal(totals[LEDGER_LEASED_ELSEWHERE], 63);
	assert_int_equal(fx_int(fx->l, "SELECT fence FROM tasks WHERE key = 'the-one'"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT attempts FROM tasks WHERE key = 'the-one'"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts"), 1);
}

struct registrar {
	pthread_t thread;
	struct ledger *l;
	pthread_barrier_t *barrier;
	enum ledger_outcome outcome;
	bool registered;
	int rc;
	char err[DTQ_ERRLEN];
};

static void *
registrar_run(void *arg)
{
	struct registrar *r = arg;
	struct ledger_claim_req req = {.key = "plain-race", .owner = "w", .lease_ms = LEASE_MS,
				       .register_missing = true, .task_name = "t", .max_attempts = 3};
	struct ledger_claim_res res;

	pthread_barrier_wait(r->barrier);
	r->rc = ledger_claim(r->l, &req, &res, r->err);
	r->outcome = res.outcome;
	r->registered = res.registered;
	ledger_claim_res_cleanup(&res);
	return NULL;
}

/* 64 claimers registering a key nobody submitted (claim_or_register). */
static void
test_64_registrars_race(void **state)
{
	struct fx *fx = *state;
	struct registrar rs[64];
	pthread_barrier_t barrier;
	int i, claimed = 0, registered = 0;

	memset(rs, 0, sizeof(rs));
	pthread_barrier_init(&barrier, NULL, 64);
	for (i = 0; i < 64; i++) {
		rs[i].l = fx_open(fx->schema, false);
		rs[i].barrier = &barrier;
	}
	for (i = 0; i < 64; i++)
		assert_int_equal(pthread_create(&rs[i].thread, NULL, registrar_run, &rs[i]), 0);
	for (i = 0; i < 64; i++) {
		pthread_join(rs[i].thread, NULL);
		if (rs[i].rc < 0)
			fail_msg("registrar %d: %s", i, rs[i].err);
		claimed += rs[i].outcome == LEDGER_CLAIMED;
		registered += rs[i].registered;
		ledger_close(rs[i].l);
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(claimed, 1);
	assert_int_equal(registered, 1);
	assert_int_equal(fx_int(fx->l, "SELECT fence FROM tasks WHERE key = 'plain-race'"), 1);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts"), 1);
}

/* 1,000 keys, 8 claimers each (every claimer walks all keys in its own
 * random order): each key claimed exactly once, fence 1, one attempt. */
static void
test_1000_keys_8_claimers(void **state)
{
	struct fx *fx = *state;
	enum { NKEYS = 1000 };
	char **keys = xcalloc(NKEYS, sizeof(char *));
	int *claimed_by = xcalloc(NKEYS, sizeof(int));
	int totals[LEDGER_OUTCOME_COUNT];
	int64_t t0;
	size_t i;

	fx_exec(fx->l, "INSERT INTO tasks (key, task_name) SELECT 'k-' || g, 'dtq.exec'"
		       " FROM generate_series(0, 999) AS g");
	for (i = 0; i < NKEYS; i++)
		keys[i] = xasprintf("k-%zu", i);
	t0 = dtq_now_ms();
	run_claimers(fx->schema, 8, (const char *const *)keys, NKEYS, claimed_by, true, totals);
	print_message("8000 claims on 8 connections in %lld ms\n",
		      (long long)(dtq_now_ms() - t0));
	for (i = 0; i < NKEYS; i++)
		if (claimed_by[i] != 1)
			fail_msg("key %s claimed %d times", keys[i], claimed_by[i]);
	assert_int_equal(totals[LEDGER_CLAIMED], NKEYS);
	assert_int_equal(totals[LEDGER_LEASED_ELSEWHERE], 7 * NKEYS);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM tasks WHERE fence = 1 AND attempts = 1"
				       " AND state = 'running'"), NKEYS);
	assert_int_equal(fx_int(fx->l, "SELECT count(*) FROM attempts"), NKEYS);
	assert_int_equal(fx_int(fx->l, "SELECT count(DISTINCT key) FROM attempts"), NKEYS);
	for (i = 0; i < NKEYS; i++)
		free(keys[i]);
	free(keys);
	free(claimed_by);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_64_claimers_one_key, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_64_registrars_race, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_1000_keys_8_claimers, fx_setup, fx_teardown),
	};

	if (!getenv("DTQ_TEST_PG_DSN")) {
		fprintf(stderr, "it_ledger_race: DTQ_TEST_PG_DSN is not set (run through tests/run.sh)\n");
		return 1;
	}
	log_setup(LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
