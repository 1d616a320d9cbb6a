/* Error reporting: one thread-local message, set by the function that fails.
 * Convention everywhere in ocd: functions return 0 (or a non-NULL pointer) on
 * success and -1 (or NULL) on failure after calling ocd_fail(). The command
 * prints ocd_last_error() as its one error line. */
#ifndef OCD_BASE_ERROR_H
#define OCD_BASE_ERROR_H

#include <stddef.h>

#if defined(__GNUC__)
#define OCD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OCD_PRINTF(a, b)
#endif

/* Sets the message (printf-style) and returns -1, so `return ocd_fail(...)` works. */
int ocd_fail(const char *fmt, ...) OCD_PRINTF(1, 2);
/* Prefixes the current message with more context: "ctx: old message". Returns -1. */
int ocd_fail_context(const char *fmt, ...) OCD_PRINTF(1, 2);
const char *ocd_last_error(void);
void ocd_clear_error(void);

/* Allocation that fails cleanly: sets the error and returns NULL. */
void *ocd_malloc(size_t n);
void *ocd_calloc(size_t count, size_t size);

#endif
