/* fileio.c — see include/ngtrain/fileio.h. */
#include "ngtrain/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ngt_tmp_path(const char *path, char *tmp, size_t tmplen) {
  snprintf(tmp, tmplen, "%s.tmp.%ld", path, (long)getpid());
}

static int fsync_path(const char *p, int dir) {
  int fd = open(p, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

int ngt_commit_tmp(const char *tmp, const char *path, ngt_err *err) {
  if (fsync_path(tmp, 0) != 0) {
    int e = errno;
    unlink(tmp);
    return ngt_err_set(err, NGT_EIO, "cannot write '%s': fsync failed: %s (is the disk full?)",
                       path, strerror(e));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return ngt_err_set(err, NGT_EIO, "cannot write '%s': rename from '%s' failed: %s", path, tmp,
                       strerror(e));
  }
  char *copy = strdup(path);
  if (copy) {
    (void)fsync_path(dirname(copy), 1); /* best effort: some filesystems refuse */
    free(copy);
  }
  return 0;
}

void ngt_hdf5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

const char *ngt_hdf5_locking(void) {
  const char *v = getenv("HDF5_USE_FILE_LOCKING");
  if (!v) return "true (HDF5 default; set HDF5_USE_FILE_LOCKING=FALSE on NFS/Lustre)";
  return v;
}

int ngt_read_text_file(const char *path, char **out, ngt_err *err) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return ngt_err_set(err, NGT_EIO, "cannot open '%s': %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return ngt_err_set(err, NGT_ENOMEM, "out of memory reading '%s'", path);
  }
  size_t got;
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 >= cap) {
      if (cap > ((size_t)1 << 30)) {
        free(buf);
        fclose(f);
        return ngt_err_set(err, NGT_EFORMAT,
                           "'%s' is larger than 1 GiB; is it really a text file?", path);
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return ngt_err_set(err, NGT_ENOMEM, "out of memory reading '%s'", path);
      }
      buf = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return ngt_err_set(err, NGT_EIO, "error reading '%s'", path);
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

int ngt_mkdir_p(const char *path, ngt_err *err) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return ngt_err_set(err, NGT_EINVAL, "path too long: '%s'", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return ngt_err_set(err, NGT_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    return ngt_err_set(err, NGT_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
  struct stat st;
  if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
    return ngt_err_set(err, NGT_EIO, "'%s' exists and is not a directory", buf);
  return 0;
}
