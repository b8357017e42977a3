/* test_ledger.c - the ledger's pure parts: names, parameter builders and
 * result parsers (on PGresults built in memory; no server). The SQL itself
 * is tested against PostgreSQL in tests/integration/it_ledger*.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "dtq/ledger.h"

static char err[DTQ_ERRLEN];

static void
test_names_round_trip(void **state)
{
	enum ledger_state s;
	int i;

	UNUSED(state);
	for (i = 0; i < LEDGER_STATE_COUNT; i++) {
		assert_int_equal(ledger_state_parse(ledger_state_name((enum ledger_state)i), &s), 0);
		assert_int_equal(s, i);
	}
	assert_int_equal(ledger_state_parse("Queued", &s), -DTQ_EINVAL);
	assert_string_equal(ledger_outcome_name(LEDGER_LEASED_ELSEWHERE), "LEASED_ELSEWHERE");
	assert_string_equal(ledger_outcome_name(LEDGER_OUTCOME_COUNT), "?");
	assert_true(ledger_state_is_terminal(LEDGER_STATE_DEAD));
	assert_false(ledger_state_is_terminal(LEDGER_STATE_RUNNING));
	assert_string_equal(ledger_reap_action_name(LEDGER_REAP_CANCELLED), "cancelled");
}

static void
test_submit_params(void **state)
{
	static const char payload[] = {'a', '\0', 'b'};
	struct ledger_submit_req req = {.key = "k'1", .task_name = "dtq.exec",
					.payload_sha256 = "0123456789abcdef0123456789abcdef"
							  "0123456789abcdef0123456789abcdef",
					.payload = payload, .payload_len = sizeof(payload),
					.max_attempts = 5};
	struct ledger_params p;

	UNUSED(state);
	assert_int_equal(ledger_submit_params(&p, &req, err), 0);
	assert_int_equal(p.n, 6);
	assert_string_equal(p.values[0], "k'1"); /* passed as is: parameters, not SQL text */
	assert_int_equal(p.formats[3], 1);       /* the payload is binary, NUL and all */
	assert_int_equal(p.lengths[3], 3);
	assert_ptr_equal(p.values[3], payload);
	assert_null(p.values[4]);                /* no labels: SQL NULL, {} in the database */
	assert_string_equal(p.values[5], "5");
	ledger_params_cleanup(&p);
	assert_int_equal(ledger_result_format(ledger_sql_submit), 0);
	assert_int_equal(ledger_result_format(ledger_sql_payload), 1);

	req.payload_sha256 = "0123";
	assert_int_equal(ledger_submit_params(&p, &req, err), -DTQ_EINVAL);
	req.payload_sha256 = NULL;
	req.key = "\xe2\x82"; /* truncated UTF-8 */
	assert_int_equal(ledger_submit_params(&p, &req, err), -DTQ_EINVAL);
	assert_non_null(strstr(err, "UTF-8"));
	req.key = "\xed\xa0\x80"; /* a surrogate */
	assert_int_equal(ledger_submit_params(&p, &req, err), -DTQ_EINVAL);
	req.key = "\xf0\x9f\x8e\x89"; /* U+1F389 */
	assert_int_equal(ledger_submit_params(&p, &req, err), 0);
	ledger_params_cleanup(&p);
}

static void
test_complete_and_claim_params(void **state)
{
	struct ledger_complete_req c = {.key = "k", .fence = 42, .state = LEDGER_STATE_QUEUED};
	struct ledger_claim_req cl = {.key = "k", .owner = "w", .lease_ms = 60000};
	struct ledger_params p;

	UNUSED(state);
	assert_int_equal(ledger_complete_params(&p, &c, err), 0);
	assert_string_equal(p.values[1], "42");
	assert_string_equal(p.values[2], "queued");
	assert_null(p.values[3]); /* no exit code */
	ledger_params_cleanup(&p);
	c.state = LEDGER_STATE_RUNNING;
	assert_int_equal(ledger_complete_params(&p, &c, err), -DTQ_EINVAL);

	assert_int_equal(ledger_claim_params(&p, &cl, err), 0);
	assert_int_equal(p.n, 9);
	assert_string_equal(p.values[2], "60000");
	assert_string_equal(p.values[4], "f");
	assert_null(p.values[5]); /* registration fields only when registering */
	ledger_params_cleanup(&p);
	cl.lease_ms = 0;
	assert_int_equal(ledger_claim_params(&p, &cl, err), -DTQ_EINVAL);
	cl.lease_ms = 1000;
	cl.register_missing = true; /* needs a task name */
	assert_int_equal(ledger_claim_params(&p, &cl, err), -DTQ_EINVAL);
}

static void
test_status_params_are_json(void **state)
{
	const char *keys[] = {"a\"b", "c\\d", "e\nf"};
	struct ledger_params p;
	cJSON *arr;
	int i;

	UNUSED(state);
	assert_int_equal(ledger_status_params(&p, keys, 3, err), 0);
	arr = cJSON_Parse(p.values[0]);
	assert_non_null(arr);
	assert_int_equal(cJSON_GetArraySize(arr), 3);
	for (i = 0; i < 3; i++)
		assert_string_equal(cJSON_GetArrayItem(arr, i)->valuestring, keys[i]);
	cJSON_Delete(arr);
	ledger_params_cleanup(&p);
	assert_null(p.own[0]);
}

/* A PGRES_TUPLES_OK result with the given text columns and rows. */
static PGresult *
make_result(int ncols, const char *const *names, int nrows, const char *const *cells)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[16];
	int r, c;

	memset(attrs, 0, sizeof(attrs));
	for (c = 0; c < ncols; c++)
		attrs[c].name = (char *)names[c];
	assert_int_equal(PQsetResultAttrs(res, ncols, attrs), 1);
	for (r = 0; r < nrows; r++)
		for (c = 0; c < ncols; c++) {
			const char *v = cells[r * ncols + c];

			assert_int_equal(PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1), 1);
		}
	return res;
}

static void
test_heartbeat_and_complete_parse(void **state)
{
	static const char *const hb_cols[] = {"cancel_requested", "lease_until"};
	static const char *const hb_row[] = {"t", "1700000000123"};
	static const char *const c_cols[] = {"state", "attempts", "max_attempts", "closed"};
	static const char *const c_row[] = {"dead", "3", "3", "1"};
	struct ledger_heartbeat_res hb;
	struct ledger_complete_res cr;
	PGresult *res;

	UNUSED(state);
	res = make_result(2, hb_cols, 0, NULL);
	assert_int_equal(ledger_heartbeat_parse(res, &hb, err), 0);
	assert_int_equal(hb.outcome, LEDGER_LOST);
	PQclear(res);
	res = make_result(2, hb_cols, 1, hb_row);
	assert_int_equal(ledger_heartbeat_parse(res, &hb, err), 0);
	assert_int_equal(hb.outcome, LEDGER_OK);
	assert_true(hb.cancel_requested);
	assert_int_equal(hb.lease_until, 1700000000123LL);
	PQclear(res);

	res = make_result(4, c_cols, 1, c_row);
	assert_int_equal(ledger_complete_parse(res, &cr, err), 0);
	assert_int_equal(cr.outcome, LEDGER_OK);
	assert_int_equal(cr.state, LEDGER_STATE_DEAD);
	assert_int_equal(cr.max_attempts, 3);
	PQclear(res);
	res = make_result(4, c_cols, 0, NULL);
	assert_int_equal(ledger_complete_parse(res, &cr, err), 0);
	assert_int_equal(cr.outcome, LEDGER_LOST);
	PQclear(res);
}

static void
test_parse_errors(void **state)
{
	static const char *const cols[] = {"outcome"};
	static const char *const row[] = {"CLAIMED"};
	struct ledger_claim_res cr;
	PGresult *res;

	UNUSED(state);
	/* no result at all: a lost connection, retryable */
	assert_int_equal(ledger_result_error(NULL, NULL, err), -DTQ_ENET);
	assert_int_equal(ledger_claim_parse(NULL, &cr, err), -DTQ_ENET);
	/* a result without the task's columns is refused, not half-read */
	res = make_result(1, cols, 1, row);
	assert_int_equal(ledger_claim_parse(res, &cr, err), -DTQ_EREMOTE);
	assert_null(cr.task.key);
	PQclear(res);
	res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
	assert_true(ledger_result_error(res, NULL, err) < 0);
	PQclear(res);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip),
		cmocka_unit_test(test_submit_params),
		cmocka_unit_test(test_complete_and_claim_params),
		cmocka_unit_test(test_status_params_are_json),
		cmocka_unit_test(test_heartbeat_and_complete_parse),
		cmocka_unit_test(test_parse_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
