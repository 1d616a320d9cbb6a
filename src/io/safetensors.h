/* safetensors: checked, memory-mapped reader and an atomic writer.
 *
 * File layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
 * then the raw little-endian data. The reader checks everything a hostile file
 * could lie about (header size, JSON validity, dtypes, shape x dtype = byte length,
 * offsets inside the file, no overlaps) before handing out a pointer. */
#ifndef OCD_IO_SAFETENSORS_H
#define OCD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_DTYPE_COUNT
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;            /* points into the reader's own storage */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;            /* inside the mmap; may be unaligned for F16/BF16 files */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates. NULL on failure (ocd_last_error() says why, with the path). */
st_file *st_open(const char *path);
/* Same over a caller-owned buffer (not copied; must outlive the st_file). For fuzz tests. */
st_file *st_open_memory(const void *buf, size_t len, const char *label);
void st_close(st_file *f);

int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);   /* NULL if absent (no error set) */
const char *st_metadata(const st_file *f, const char *key);     /* NULL if absent */
const char *st_path(const st_file *f);

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);

/* Converts any float tensor (F32/F16/BF16/F64) into dst[numel] floats. */
int st_read_f32(const st_tensor *t, float *dst);
/* Same, allocating (free() it). NULL on failure. */
float *st_to_f32(const st_tensor *t);
/* Integer tensors (I64/I32/I16/I8/U8/BOOL, and F32 holding integers) into int32. */
int st_read_i32(const st_tensor *t, int32_t *dst);
/* Finds `name`, checks it is float and has exactly `ndim` dims with the given shape
 * (a shape entry of -1 matches anything), converts to a new f32 buffer. */
float *st_get_f32(const st_file *f, const char *name, int ndim, const int64_t *shape);

/* Writer: tensors are copied in; the file is written to PATH.tmp.XXXXXX and renamed. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                  const int64_t *shape, const void *data);
int st_writer_add_f32(st_writer *w, const char *name, int ndim, const int64_t *shape, const float *data);
int st_writer_meta(st_writer *w, const char *key, const char *value);
int st_writer_save(st_writer *w, const char *path);
void st_writer_free(st_writer *w);

#endif
