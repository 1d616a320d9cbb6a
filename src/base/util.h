/* Small helpers shared by every floor: timing, memory statistics, files. */
#ifndef OCD_BASE_UTIL_H
#define OCD_BASE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

double ocd_now(void);                      /* monotonic seconds */
size_t ocd_peak_rss_bytes(void);           /* high-water mark of the resident set (VmHWM) */
size_t ocd_current_rss_bytes(void);
/* Reads a whole file into a NUL-terminated malloc'd buffer. NULL + error on failure. */
char *ocd_read_file(const char *path, size_t *len_out);
int ocd_file_exists(const char *path);
int ocd_is_dir(const char *path);
/* Joins dir + "/" + name into buf. Returns buf. */
char *ocd_path_join(char *buf, size_t cap, const char *dir, const char *name);

/* Appends fmt to the NUL-terminated note[cap], "; " after what is already there (truncated at
 * cap): the one-line notes where a pipeline says which fallback or decision it took. */
void ocd_note_vadd(char *note, size_t cap, const char *fmt, va_list ap);
void ocd_note_add(char *note, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define OCD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OCD_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
