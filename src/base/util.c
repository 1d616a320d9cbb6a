#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/error.h"

double ocd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0, fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0) { kb = strtoull(line + fl, NULL, 10); break; }
    fclose(f);
    return kb * 1024;
}

size_t ocd_peak_rss_bytes(void) { return status_kb("VmHWM:"); }
size_t ocd_current_rss_bytes(void) { return status_kb("VmRSS:"); }

char *ocd_read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) { ocd_fail("%s: cannot open (%s)", path, strerror(errno)); return NULL; }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 65536 * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); ocd_fail("%s: out of memory", path); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); ocd_fail("%s: read error", path); return NULL; }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

int ocd_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int ocd_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

char *ocd_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    snprintf(buf, cap, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", name);
    return buf;
}

void ocd_note_vadd(char *note, size_t cap, const char *fmt, va_list ap) {
    size_t len = strlen(note);
    if (len && len + 2 < cap) strcpy(note + len, "; "), len += 2;
    if (len < cap) vsnprintf(note + len, cap - len, fmt, ap);
}

void ocd_note_add(char *note, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ocd_note_vadd(note, cap, fmt, ap);
    va_end(ap);
}
