/*
 * Unit tests of fleet.c's pure part: the rendezvous hash that picks each
 * shared account's owner among the live instances.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tokend.h"
#include "unit.h"

#define NODES		10
#define ACCOUNTS	1000

static char	*nodes[NODES];

static int
setup_nodes(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < NODES; i++)
		if (asprintf(&nodes[i], "web%zu", i + 1) == -1)
			return -1;
	return 0;
}

static int
teardown_nodes(void **state)
{
	size_t	 i;

	(void)state;
	for (i = 0; i < NODES; i++)
		free(nodes[i]);
	return 0;
}

static size_t
node_index(const char *n)
{
	size_t	 i;

	for (i = 0; i < NODES; i++)
		if (!strcmp(nodes[i], n))
			return i;
	fail_msg("owner %s is not a node", n);
	return 0;
}

/* 1,000 accounts over 10 nodes: none gets more than 1.5 times its share. */
static void
test_owner_spreads(void **state)
{
	size_t	 count[NODES] = { 0 }, i, max = 0, min = ACCOUNTS;
	char	 name[32];

	(void)state;
	for (i = 0; i < ACCOUNTS; i++) {
		snprintf(name, sizeof name, "acct%04zu", i);
		count[node_index(fleet_owner(name, nodes, NODES))]++;
	}
	for (i = 0; i < NODES; i++) {
		if (count[i] > max)
			max = count[i];
		if (count[i] < min)
			min = count[i];
	}
	if (max > ACCOUNTS / NODES * 3 / 2 || min < ACCOUNTS / NODES / 2)
		fail_msg("owners spread from %zu to %zu accounts a node", min,
		    max);
}

/* Every instance agrees whatever order it sees the members in. */
static void
test_owner_ignores_order(void **state)
{
	char	*rev[NODES], name[32];
	size_t	 i;

	(void)state;
	for (i = 0; i < NODES; i++)
		rev[i] = nodes[NODES - 1 - i];
	for (i = 0; i < 200; i++) {
		snprintf(name, sizeof name, "a-%zu", i);
		CHECK_STR(name, fleet_owner(name, rev, NODES),
		    fleet_owner(name, nodes, NODES));
	}
}

/* A node leaving moves its own accounts only; one joining takes some. */
static void
test_owner_moves_little(void **state)
{
	char	*rest[NODES], name[32];
	const char *before, *after;
	size_t	 i, j, n = 0, moved = 0;

	(void)state;
	for (i = 0; i < NODES; i++)
		if (i != 3)
			rest[n++] = nodes[i];
	for (i = 0; i < ACCOUNTS; i++) {
		snprintf(name, sizeof name, "acct%04zu", i);
		before = fleet_owner(name, nodes, NODES);
		after = fleet_owner(name, rest, n);
		if (strcmp(before, nodes[3]) != 0)
			CHECK_STR(name, after, before);
		else
			moved++;
		for (j = 0; j < n; j++)
			if (!strcmp(after, rest[j]))
				break;
		if (j == n)
			fail_msg("%s: owner %s has left", name, after);
	}
	if (moved == 0)
		fail_msg("web4 owned nothing");
}

static void
test_owner_none(void **state)
{
	(void)state;
	assert_null(fleet_owner("a", nodes, 0));
	CHECK_STR("one node", fleet_owner("a", nodes, 1), nodes[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_spreads),
		cmocka_unit_test(test_owner_ignores_order),
		cmocka_unit_test(test_owner_moves_little),
		cmocka_unit_test(test_owner_none),
	};

	return cmocka_run_group_tests(tests, setup_nodes, teardown_nodes);
}
