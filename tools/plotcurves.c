/* plotcurves — draw a run's training curves from DIR/metrics.jsonl into DIR/curves.svg.
 *
 *   plotcurves exp/demo            # writes exp/demo/curves.svg
 *   plotcurves --out=c.svg exp/demo
 *
 * Four panels against the iteration: objective (train, valid), frame accuracy (train,
 * valid), learning rate, active jobs. SVG is written directly (no plotting packages).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngtrain/fileio.h"
#include "ngtrain/log.h"
#include "ngtrain/opts.h"

enum { F_ITER, F_TOBJ, F_VOBJ, F_TACC, F_VACC, F_LR, F_JOBS, NF };
static const char *keys[NF] = {"\"iter\":",
                               "\"train_objective\":",
                               "\"valid_objective\":",
                               "\"train_accuracy\":",
                               "\"valid_accuracy\":",
                               "\"lr\":",
                               "\"jobs\":"};

typedef struct {
  double *v[NF];
  int n, cap;
} series;

static void panel(FILE *f, const series *s, int x0, int y0, int w, int h, const char *title, int a,
                  int b, const char *la, const char *lb, double scale) {
  double lo = INFINITY, hi = -INFINITY;
  int ks[2] = {a, b};
  for (int k = 0; k < 2; k++) {
    if (ks[k] < 0) continue;
    for (int i = 0; i < s->n; i++) {
      double v = s->v[ks[k]][i] * scale;
      if (isfinite(v)) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  if (!isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-12) {
    hi += 0.5;
    lo -= 0.5;
  }
  double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  double xmax = s->n > 1 ? s->v[F_ITER][s->n - 1] : 1, xmin = s->n ? s->v[F_ITER][0] : 0;
  if (xmax <= xmin) xmax = xmin + 1;
  fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='white' stroke='#888'/>\n", x0, y0,
          w, h);
  fprintf(f, "<text x='%d' y='%d' font-size='14' font-weight='bold'>%s</text>\n", x0, y0 - 8,
          title);
  for (int t = 0; t <= 4; t++) {
    double v = lo + (hi - lo) * t / 4.0;
    int y = y0 + h - (int)(h * t / 4.0);
    fprintf(f, "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#eee'/>\n", x0, y, x0 + w, y);
    fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='end'>%.4g</text>\n", x0 - 4, y + 4,
            v);
  }
  fprintf(f, "<text x='%d' y='%d' font-size='11'>iteration %.0f</text>\n", x0, y0 + h + 14, xmin);
  fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='end'>%.0f</text>\n", x0 + w,
          y0 + h + 14, xmax);
  const char *colors[2] = {"#1f77b4", "#d62728"};
  const char *labels[2] = {la, lb};
  for (int k = 0; k < 2; k++) {
    if (ks[k] < 0) continue;
    fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[k]);
    for (int i = 0; i < s->n; i++) {
      double v = s->v[ks[k]][i] * scale;
      if (!isfinite(v)) continue;
      double x = x0 + w * (s->v[F_ITER][i] - xmin) / (xmax - xmin);
      double y = y0 + h - h * (v - lo) / (hi - lo);
      fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "'/>\n<text x='%d' y='%d' font-size='12' fill='%s'>%s</text>\n", x0 + w - 130,
            y0 + 16 + 14 * k, colors[k], labels[k]);
  }
}

static const ngt_tool tool = {
    "plotcurves",
    "draw a run's training curves (DIR/metrics.jsonl) as an SVG: objective, frame\n"
    "accuracy, learning rate and active jobs against the iteration.",
    "plotcurves [--out=FILE.svg] DIR",
    "plotcurves exp/demo            # writes exp/demo/curves.svg\n"
    "plotcurves --out=c.svg exp/demo",
    NULL,
    1,
    1};

int main(int argc, char **argv) {
  const char *out = NULL;
  ngt_opt table[] = {{"out", NGT_OPT_STRING, &out, "output SVG (default DIR/curves.svg)", 0},
                     {0, 0, 0, 0, 0}};
  char **pos = NULL;
  int npos = 0, code = 0;
  if (ngt_opts_tool(&tool, table, argc, argv, &pos, &npos, &code)) return code;
  ngt_err err = {0};
  char mp[4096], op[4096];
  snprintf(mp, sizeof mp, "%s/metrics.jsonl", pos[0]);
  snprintf(op, sizeof op, "%s", out ? out : "");
  if (!out) snprintf(op, sizeof op, "%s/curves.svg", pos[0]);
  FILE *f = fopen(mp, "r");
  if (!f) {
    return ngt_fail("cannot open '%s' (is '%s' an ngtrain run directory?)", mp, pos[0]);
  }
  series s;
  memset(&s, 0, sizeof s);
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    if (s.n == s.cap) {
      s.cap = s.cap ? 2 * s.cap : 64;
      for (int k = 0; k < NF; k++) {
        s.v[k] = realloc(s.v[k], sizeof(double) * (size_t)s.cap);
        if (!s.v[k]) ngt_die("out of memory");
      }
    }
    int ok = 1;
    for (int k = 0; k < NF; k++) {
      const char *p = strstr(line, keys[k]);
      if (!p) {
        ok = 0;
        break;
      }
      s.v[k][s.n] = strtod(p + strlen(keys[k]), NULL);
    }
    if (ok) s.n++;
  }
  fclose(f);
  if (s.n == 0) {
    return ngt_fail("'%s' holds no iteration lines yet", mp);
  }
  char tmp[4200];
  ngt_tmp_path(op, tmp, sizeof tmp);
  FILE *g = fopen(tmp, "w");
  if (!g) {
    return ngt_fail("cannot write '%s': %s (does the directory exist and is it writable?)", op,
                    strerror(errno));
  }
  fprintf(g,
          "<svg xmlns='http://www.w3.org/2000/svg' width='1000' height='640' "
          "font-family='sans-serif'>\n"
          "<rect width='100%%' height='100%%' fill='#fafafa'/>\n"
          "<text x='20' y='24' font-size='16'>ngtrain: %s (%d iterations)</text>\n",
          pos[0], s.n);
  panel(g, &s, 80, 60, 380, 230, "objective (log-prob per frame)", F_TOBJ, F_VOBJ, "train",
        "valid", 1.0);
  panel(g, &s, 580, 60, 380, 230, "frame accuracy (%)", F_TACC, F_VACC, "train", "valid", 100.0);
  panel(g, &s, 80, 370, 380, 230, "learning rate (per job)", F_LR, -1, "lr", "", 1.0);
  panel(g, &s, 580, 370, 380, 230, "active jobs", F_JOBS, -1, "jobs", "", 1.0);
  fprintf(g, "</svg>\n");
  if (fclose(g) != 0 || ngt_commit_tmp(tmp, op, &err)) {
    return ngt_fail("cannot write '%s': %s", op, err.msg);
  }
  printf("plotcurves: wrote %s\n", op);
  for (int k = 0; k < NF; k++) free(s.v[k]);
  free(pos);
  return 0;
}
