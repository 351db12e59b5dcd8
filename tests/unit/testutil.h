/*
 * testutil: small helpers shared by unit tests (tests/unit/test_*.c link
 * its object through UNIT_EXTRA_<test> in the Makefile).
 */
#ifndef TESTS_TESTUTIL_H
#define TESTS_TESTUTIL_H

#include <stddef.h>

/* Makes a new private directory /tmp/NAME.XXXXXX and writes its path into
 * dir (size bytes); returns 0, or -1 with errno set. */
int testutil_mkdtemp(char *dir, size_t size, const char *name);

/* Removes dir and everything below it; returns 0 or -1. */
int testutil_rmtree(const char *dir);

#endif
