#include "app/probe_util.h"

#include "base/error.h"

int probe_open(const char *path, st_file **f, json_t **spec) {
    if (!(*f = st_open(path))) return -1;
    const char *meta = st_metadata(*f, "spec");
    json_error_t err;
    *spec = meta ? json_loads(meta, 0, &err) : json_object();
    if (!*spec) {
        st_close(*f);
        *f = NULL;
        return meta ? ocd_fail("%s: __metadata__.spec: %s", path, err.text) : ocd_fail("out of memory");
    }
    return 0;
}
