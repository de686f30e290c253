/* fuzz_common.h — helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Every harness is built by tests/fuzz/run.sh with
 *   clang -fsanitize=fuzzer,address,undefined  fuzz_<parser>.c  <library sources>
 * and feeds one input to one parser of outside input. A crash, a sanitizer report, a
 * leak, or the library calling ngt_die()/exit() on an input is a finding: parsers must
 * return an error naming the file instead (docs/design.md §6).
 *
 * Parsers that take a path get the input written to a scratch file in a per-process
 * directory (on /dev/shm when it exists: HDF5 reopens files often).
 */
#ifndef NGT_FUZZ_COMMON_H
#define NGT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ngtrain/log.h"

static char fz_dir[256];

/* Make the scratch directory once; quiet the library's logging. */
static inline void fz_init(void) {
  if (fz_dir[0]) return;
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(fz_dir, sizeof fz_dir, "%s/ngt-fuzz.XXXXXX", base);
  if (!mkdtemp(fz_dir)) {
    perror("mkdtemp");
    abort();
  }
  ngt_log_set_level(NGT_ERROR);
}

/* fz_dir/name; the buffer is static per call site (callers copy if they need two). */
static inline void fz_path(const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/%s", fz_dir, name);
}

/* Write data to fz_dir/name (replacing it); returns 0 or aborts (a harness failure). */
static inline int fz_write(const char *name, const uint8_t *data, size_t size, char *path,
                           size_t n) {
  fz_path(name, path, n);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    abort();
  }
  if (size && fwrite(data, 1, size, f) != size) {
    perror(path);
    abort();
  }
  if (fclose(f) != 0) {
    perror(path);
    abort();
  }
  return 0;
}

/* The library's error messages must be one NUL-terminated sentence: check it is. */
static inline void fz_check_err(const ngt_err *e) {
  size_t n = strnlen(e->msg, sizeof e->msg);
  if (n == sizeof e->msg) abort();     /* not terminated */
  if (e->code != 0 && n == 0) abort(); /* an error without a message */
}

#endif
