/* kaldi_io.h — Kaldi tables in (feature matrices, alignments) and out (float matrices).
 *
 * What users bring from a Kaldi data directory, read without Kaldi:
 *   - feature tables: binary or text archives ("ark:feats.ark") and scp files
 *     ("scp:feats.scp", lines "utt-id path.ark:offset", optionally "...:offset[r0:r1]" or
 *     "[r0:r1,c0:c1]" with Kaldi's inclusive row/column ranges). Binary/text is detected
 *     per entry. Matrix objects: "FM " (float), "DM " (double), and the compressed forms
 *     "CM ", "CM2", "CM3" that `copy-feats --compress=true` writes (decoded exactly as
 *     Kaldi's CompressedMatrix::CopyToMat does; formulas in src/kaldi_io.c);
 *   - alignments as `ali-to-pdf` writes them: text "utt-id pdf pdf ..." one line per
 *     utterance, or a binary archive of int32 vectors; indexed by key (memory grows with
 *     the number of utterances, not frames) and read back on lookup.
 * What decoders consume: binary archives of float matrices ("key \0BFM " + sizes + data),
 * which Kaldi's copy-feats and latgen-faster-mapped read; also "ark,t:" text and
 * "ark,scp:out.ark,out.scp".
 *
 * Specifiers: "ark:PATH", "scp:PATH", options before the colon are accepted and ignored
 * ("ark,s,cs:feats.ark"); a plain PATH means scp if it ends in ".scp", else ark. PATH "-"
 * is stdin/stdout (sequential reading only: no random access, entry.offset = -1).
 * Pipes ("cmd |") are not supported: run the command into a file first.
 *
 * Every error names the file, the utterance, the byte offset and what is wrong, e.g.
 *   "archive 'feats.ark': utterance 'utt7' at byte 1234: truncated: the FM header says
 *    100 x 40 floats (16000 bytes) but only 812 bytes remain (is the file complete?)".
 *
 * Ownership: the reader owns the key and matrix it returns (valid until the next call on
 * that reader); entry.file stays valid until the reader is closed.
 *
 *   ngt_kaldi_reader *r; ngt_kaldi_entry e; int rc;
 *   if (ngt_kaldi_reader_open("scp:data/train/feats.scp", &r, &err)) ngt_die("%s", err.msg);
 *   while ((rc = ngt_kaldi_reader_next(r, 1, &e, &err)) == 1) use(e.key, e.mat);  // T x D
 *   if (rc < 0) ngt_die("%s", err.msg);
 *   ngt_kaldi_reader_close(r);
 */
#ifndef NGTRAIN_KALDI_IO_H
#define NGTRAIN_KALDI_IO_H

#include <stdint.h>

#include "ngtrain/log.h"
#include "ngtrain/mat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a matrix was stored (ngt_kaldi_entry.format). */
typedef enum ngt_kaldi_format {
  NGT_KALDI_TEXT = 0, /* text "[ ... ]" */
  NGT_KALDI_FM = 1,   /* binary float */
  NGT_KALDI_DM = 2,   /* binary double (converted to float) */
  NGT_KALDI_CM = 3,   /* compressed, per-column 3-piece uint8 */
  NGT_KALDI_CM2 = 4,  /* compressed, uint16 linear */
  NGT_KALDI_CM3 = 5   /* compressed, uint8 linear */
} ngt_kaldi_format;

/* One table entry, filled by ngt_kaldi_reader_next / ngt_kaldi_reader_read_at. */
typedef struct ngt_kaldi_entry {
  const char *key;  /* utterance id; owned by the reader, valid until its next call */
  ngt_mat mat;      /* T x D, stride = D, owned by the reader (valid until its next call);
                        mat.data is NULL when the call was shape-only (with_data = 0) */
  const char *file; /* the archive holding the matrix; owned by the reader, valid until
                        ngt_kaldi_reader_close */
  int64_t offset;   /* byte offset of the object in file (its "\0B" or "["), i.e. what
                        an scp line "key file:offset" points at; -1 when reading stdin */
  int format;       /* ngt_kaldi_format */
  int has_range;    /* 1 if an scp range "[r0:r1,c0:c1]" selected part of the matrix */
  int row0, col0;   /* first selected row/column of the stored matrix when has_range */
} ngt_kaldi_entry;

typedef struct ngt_kaldi_reader ngt_kaldi_reader;

/* Open a feature table ("ark:..", "scp:..", or a plain path, see above). For an scp the
 * whole list is read now (it is small: one line per utterance); archives are opened
 * lazily and a few stay open. Caller closes with ngt_kaldi_reader_close. */
int ngt_kaldi_reader_open(const char *rspec, ngt_kaldi_reader **out, ngt_err *err);
/* Next entry in table order: returns 1 (e filled), 0 (end of table) or a negative NGT_E*
 * code. with_data = 0 reads only the shape and skips the data (seeking where possible),
 * checking that the data is all there (so truncation is caught without decoding). */
int ngt_kaldi_reader_next(ngt_kaldi_reader *r, int with_data, ngt_kaldi_entry *e, ngt_err *err);
/* Random access: read the matrix object at byte `offset` of archive `path` (as an scp
 * line "key path:offset" does; offset 0 of a file holding a single object, too). key is
 * only used in messages and returned in e->key. Uses the reader's open-file cache and
 * buffers, so it works on any reader (the table's own, or one from
 * ngt_kaldi_reader_new_random_access); it does not move a sequential reader's position.
 * An scp range is not applied here: e->mat is the whole stored matrix.
 * Returns 0 or a negative NGT_E* code. */
int ngt_kaldi_reader_read_at(ngt_kaldi_reader *r, const char *path, int64_t offset,
                             const char *key, int with_data, ngt_kaldi_entry *e, ngt_err *err);
/* A reader with no table, for ngt_kaldi_reader_read_at only (NULL if out of memory);
 * close with ngt_kaldi_reader_close. */
ngt_kaldi_reader *ngt_kaldi_reader_new_random_access(void);
/* The specifier's file (the ark or scp path), for messages. */
const char *ngt_kaldi_reader_path(const ngt_kaldi_reader *r);
void ngt_kaldi_reader_close(ngt_kaldi_reader *r); /* NULL-tolerant */

/* Decode one compressed-matrix payload (everything after the "CM " / "CM2" / "CM3" token:
 * the 16-byte global header {float min_value, float range, int32 rows, int32 cols}, then
 * the data) of `nbytes` bytes into out (rows x cols, row-major). Exposed for tests and
 * tools; returns 0, or NGT_EFORMAT if nbytes does not match the header (err says so). */
int ngt_kaldi_decompress(int format, const unsigned char *payload, int64_t nbytes, float *out,
                         int rows, int cols, ngt_err *err);

/* Writer of a table of float matrices. wspec: "ark:PATH" (binary), "ark,t:PATH" (text),
 * "ark,scp:ARK,SCP" (binary + an scp with byte offsets), or a plain PATH (binary ark);
 * PATH "-" is stdout. Files are written to a temporary name and appear only on
 * ngt_kaldi_writer_close (atomic, fileio.h); ngt_kaldi_writer_abort removes them. */
typedef struct ngt_kaldi_writer ngt_kaldi_writer;
int ngt_kaldi_writer_open(const char *wspec, ngt_kaldi_writer **out, ngt_err *err);
/* Append one entry: key (no whitespace, non-empty) and a T x D float matrix. */
int ngt_kaldi_writer_write(ngt_kaldi_writer *w, const char *key, ngt_mat m, ngt_err *err);
/* Flush, fsync and rename into place; frees w (also on error). */
int ngt_kaldi_writer_close(ngt_kaldi_writer *w, ngt_err *err);
void ngt_kaldi_writer_abort(ngt_kaldi_writer *w); /* NULL-tolerant; frees w */

/* Alignments (pdf ids per frame), indexed by utterance. Text lines "utt-id pdf pdf ..."
 * (ali-to-pdf ark,t:) or a binary archive of int32 vectors (ali-to-pdf ark:), detected
 * per entry. "ark:"/"ark,t:" prefixes are accepted. Opening reads the file once to build
 * the index (key -> byte offset; duplicate keys and malformed lines are errors naming the
 * line); ngt_kaldi_ali_get seeks and parses one entry. The file must be seekable. */
typedef struct ngt_kaldi_ali ngt_kaldi_ali;
int ngt_kaldi_ali_open(const char *spec, ngt_kaldi_ali **out, ngt_err *err);
/* 1 = found (*labels -> n pdf ids, owned by a, valid until the next get), 0 = no such
 * utterance, < 0 = error (a value that is not an integer or does not fit int32, a
 * negative pdf id, a truncated entry; err names file, utterance and value). */
int ngt_kaldi_ali_get(ngt_kaldi_ali *a, const char *key, const int32_t **labels, int64_t *n,
                      ngt_err *err);
int64_t ngt_kaldi_ali_num_utts(const ngt_kaldi_ali *a);
const char *ngt_kaldi_ali_path(const ngt_kaldi_ali *a);
void ngt_kaldi_ali_free(ngt_kaldi_ali *a); /* NULL-tolerant */

/* Kaldi text vector "[ v0 v1 ... ]\n" (what analyze-counts writes), to path, atomically. */
int ngt_kaldi_write_text_vector(const char *path, const double *v, int n, int as_int,
                                ngt_err *err);

#ifdef __cplusplus
}
#endif
#endif
