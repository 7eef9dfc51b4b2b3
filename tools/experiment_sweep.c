/* SPDX-License-Identifier: MIT */
/*
 * mead-experiment sweep: the culture-design search.  A sweep is a plan
 * (configuration, fixed overrides, swept keys with their values, seeds)
 * kept in its directory; each (point, seed) is one task, one
 * `mead-experiment mnist` run as a child process, whose result is written
 * as its own row file (temp file + rename, so a row that exists is whole).
 * Tasks run here, one process per core, or as a Slurm job array whose
 * elements each run one task (`--task I DIR`); either way a rerun skips
 * the tasks whose rows exist, and the gather step turns the rows into
 * results.csv, results.json, landscape.svg and the summary.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mead-build-config.h"
#include "lib/core/json.h"
#include "lib/core/time.h"
#include "tools/experiment.h"

#define MAX_PARAMS 16
#define MAX_VALUES 1024
/* mead-experiment mnist takes 64 -o and 64 --readout-arg: the fixed
 * overrides and the swept keys together stay within that */
#define MAX_LIST 48
#define PLAN_VERSION 1

struct param {
	char *key;
	char **values;
	int n;
};

struct plan {
	char *config;                  /* absolute */
	char *set[MAX_LIST];           /* fixed key=value overrides */
	int n_set;
	char *readout_args[MAX_LIST];
	int n_readout_args;
	double timeout_s;
	struct param params[MAX_PARAMS];
	int n_params;
	int first_seed, seeds;
	long points, tasks;
};

struct row {
	bool ok;
	double accuracy, readout_accuracy, pixel_baseline, best_validation, wall_s;
	unsigned n;
	char why[256];                 /* not ok: what the failure marker says, or "" (never ran) */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void plan_free(struct plan *p)
{
	if (!p)
		return;
	free(p->config);
	for (int i = 0; i < p->n_set; i++)
		free(p->set[i]);
	for (int i = 0; i < p->n_readout_args; i++)
		free(p->readout_args[i]);
	for (int i = 0; i < p->n_params; i++) {
		free(p->params[i].key);
		for (int k = 0; k < p->params[i].n; k++)
			free(p->params[i].values[k]);
		free(p->params[i].values);
	}
	memset(p, 0, sizeof(*p));
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
	return d;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
	return s;
}

/* Value index of parameter k at point p: the last parameter varies fastest. */
static int value_index(const struct plan *p, long point, int k)
{
	for (int i = p->n_params - 1; i > k; i--)
		point /= p->params[i].n;
	return (int)(point % p->params[k].n);
}

static const char *point_value(const struct plan *p, long point, int k)
{
	return p->params[k].values[value_index(p, point, k)];
}

static long task_point(const struct plan *p, long t)
{
	return t / p->seeds;
}

static int task_seed(const struct plan *p, long t)
{
	return p->first_seed + (int)(t % p->seeds);
}

/* ---- the -p syntax ---- */

static int parse_number(const char *s, double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v))
		return -EINVAL;
	*ret = v;
	return 0;
}

/* "KEY=a,b,c" or "KEY=lo:hi:step" (lo, lo+step, ... up to hi inclusive). */
static int parse_param(const char *arg, struct param *ret)
{
	const char *eq = strchr(arg, '=');
	struct param p = { 0 };

	if (!eq || eq == arg) {
		fprintf(stderr, "mead-experiment: -p %s: expected KEY=v1,v2,... or KEY=lo:hi:step\n", arg);
		return -EINVAL;
	}
	for (const char *c = arg; c < eq; c++)
		if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.') {
			fprintf(stderr, "mead-experiment: -p %s: the key %.*s is not a dotted configuration key\n", arg,
				(int)(eq - arg), arg);
			return -EINVAL;
		}
	p.key = strndup(arg, (size_t)(eq - arg));
	p.values = calloc(MAX_VALUES, sizeof(char *));
	if (!p.key || !p.values)
		goto oom;
	const char *v = eq + 1;
	if (strchr(v, ':')) {
		char *a = xstrdup(v), *lo_s = a, *hi_s, *st_s;
		double lo, hi, st;
		hi_s = strchr(lo_s, ':');
		*hi_s++ = '\0';
		st_s = strchr(hi_s, ':');
		if (st_s)
			*st_s++ = '\0';
		if (!st_s || strchr(st_s, ':') || parse_number(lo_s, &lo) < 0 || parse_number(hi_s, &hi) < 0 ||
		    parse_number(st_s, &st) < 0 || st <= 0 || hi < lo) {
			fprintf(stderr, "mead-experiment: -p %s: a range is lo:hi:step with numbers, step > 0 and "
				"lo <= hi\n", arg);
			free(a);
			goto bad;
		}
		free(a);
		/* multiples of the step from lo, hi included despite rounding */
		for (long i = 0;; i++) {
			double x = lo + (double)i * st;
			if (x > hi + st * 1e-9)
				break;
			if (p.n == MAX_VALUES) {
				fprintf(stderr, "mead-experiment: -p %s: more than %d values\n", arg, MAX_VALUES);
				goto bad;
			}
			p.values[p.n++] = xasprintf("%.10g", fabs(x) < st * 1e-9 ? 0.0 : x);
		}
	} else {
		const char *s = v;
		for (;;) {
			const char *c = strchr(s, ',');
			size_t len = c ? (size_t)(c - s) : strlen(s);
			if (len == 0) {
				fprintf(stderr, "mead-experiment: -p %s: an empty value in the list\n", arg);
				goto bad;
			}
			if (p.n == MAX_VALUES) {
				fprintf(stderr, "mead-experiment: -p %s: more than %d values\n", arg, MAX_VALUES);
				goto bad;
			}
			p.values[p.n] = strndup(s, len);
			if (!p.values[p.n++])
				goto oom;
			for (int k = 0; k < p.n - 1; k++)
				if (!strcmp(p.values[k], p.values[p.n - 1])) {
					fprintf(stderr, "mead-experiment: -p %s: the value %s is listed twice\n", arg,
						p.values[k]);
					goto bad;
				}
			if (!c)
				break;
			s = c + 1;
		}
	}
	*ret = p;
	return 0;
oom:
	fprintf(stderr, "mead-experiment: out of memory\n");
bad:
	for (int k = 0; k < p.n; k++)
		free(p.values[k]);
	free(p.values);
	free(p.key);
	return -EINVAL;
}

/* ---- the plan file ---- */

static void jw_strings(struct mead_jw *w, char *const *s, int n)
{
	mead_jw_arr_begin(w);
	for (int i = 0; i < n; i++)
		mead_jw_str(w, s[i]);
	mead_jw_arr_end(w);
}

/* The plan as text, one top-level member a line, so that a changed plan
 * can be reported by the line that differs. */
static char *plan_text(const struct plan *p)
{
	size_t cap = 65536;
	for (int i = 0; i < p->n_params; i++)
		for (int k = 0; k < p->params[i].n; k++)
			cap += 2 * strlen(p->params[i].values[k]) + 8;
	char *out = malloc(cap), *buf = malloc(cap);
	size_t pos = 0;
	struct mead_jw w;
	if (!out || !buf) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
#define LINE(name, ...)                                                                  \
	do {                                                                             \
		mead_jw_init(&w, buf, cap);                                              \
		__VA_ARGS__;                                                             \
		if (mead_jw_finish(&w) < 0) {                                            \
			fprintf(stderr, "mead-experiment: the plan is too large\n");     \
			exit(1);                                                         \
		}                                                                        \
		pos += (size_t)snprintf(out + pos, cap - pos, "%s\"%s\":%s", pos ? ",\n" : "{", name, buf); \
	} while (0)
	LINE("version", mead_jw_i64(&w, PLAN_VERSION));
	LINE("config", mead_jw_str(&w, p->config));
	LINE("set", jw_strings(&w, p->set, p->n_set));
	LINE("readout_args", jw_strings(&w, p->readout_args, p->n_readout_args));
	LINE("timeout_seconds", mead_jw_double(&w, p->timeout_s));
	for (int i = 0; i < p->n_params; i++) {
		char name[32];
		snprintf(name, sizeof(name), "param%d", i);
		LINE(name, mead_jw_obj_begin(&w); mead_jw_key(&w, "key"); mead_jw_str(&w, p->params[i].key);
		     mead_jw_key(&w, "values"); jw_strings(&w, p->params[i].values, p->params[i].n);
		     mead_jw_obj_end(&w));
	}
	LINE("first_seed", mead_jw_i64(&w, p->first_seed));
	LINE("seeds", mead_jw_i64(&w, p->seeds));
	LINE("points", mead_jw_i64(&w, p->points));
	LINE("tasks", mead_jw_i64(&w, p->tasks));
#undef LINE
	snprintf(out + pos, cap - pos, "}\n");
	free(buf);
	return out;
}

static char *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t n = 0, cap = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (cap - n < 4097) {
			cap = cap ? 2 * cap : 8192;
			char *q = realloc(s, cap);
			if (!q) {
				free(s);
				fclose(f);
				return NULL;
			}
			s = q;
		}
		size_t k = fread(s + n, 1, cap - n - 1, f);
		n += k;
		if (k == 0)
			break;
	}
	fclose(f);
	s[n] = '\0';
	if (ret_len)
		*ret_len = n;
	return s;
}

/* A file that appears at path whole or not at all: written to *ret_tmp,
 * then renamed by atomic_close. */
static FILE *atomic_open(const char *path, char **ret_tmp)
{
	*ret_tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	return fopen(*ret_tmp, "w");
}

/* Closes f (NULL: its open failed) and renames tmp to path, or removes tmp;
 * frees tmp.  0 or a negative errno. */
static int atomic_close(FILE *f, char *tmp, const char *path)
{
	int rc = f ? 0 : -errno;
	if (f) {
		if (ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0)
			rc = -EIO;
		if (fclose(f) != 0 && !rc)
			rc = -EIO;
		if (!rc && rename(tmp, path) < 0)
			rc = -errno;
		if (rc)
			unlink(tmp);
	}
	free(tmp);
	return rc;
}

/* Writes text to path whole or not at all. */
static int write_atomic(const char *path, const char *text, size_t len)
{
	char *tmp;
	FILE *f = atomic_open(path, &tmp);
	if (f)
		fwrite(text, 1, len, f); /* a short write sets ferror(f): atomic_close reports it */
	return atomic_close(f, tmp, path);
}

static int strings_from(const struct mead_json *doc, const struct mead_json_value *a, char **out, int max, int *n)
{
	if (!a || a->type != MEAD_JSON_ARRAY || a->n > (uint32_t)max)
		return -EINVAL;
	*n = 0;
	for (const struct mead_json_value *v = mead_json_first(doc, a); v; v = mead_json_next(doc, v)) {
		if (v->type != MEAD_JSON_STRING)
			return -EINVAL;
		out[(*n)++] = xstrdup(v->s);
	}
	return 0;
}

static int plan_load(const char *dir, struct plan *ret, char **ret_text)
{
	char *path = xasprintf("%s/plan.json", dir), err[256];
	size_t len;
	char *text = read_file(path, &len);
	struct mead_json *doc = NULL;
	struct plan p = { 0 };
	int rc = -EINVAL;

	if (!text) {
		fprintf(stderr, "mead-experiment: %s: %s (not a sweep directory?)\n", path, strerror(errno));
		free(path);
		return -ENOENT;
	}
	if (mead_json_parse(text, len, &MEAD_JSON_DOCUMENT_LIMITS, &doc, err, sizeof(err)) < 0) {
		fprintf(stderr, "mead-experiment: %s: not JSON: %s\n", path, err);
		goto out;
	}
	const struct mead_json_value *root = mead_json_root(doc), *v;
	if (mead_json_number_at(doc, root, "version", 0) != PLAN_VERSION) {
		fprintf(stderr, "mead-experiment: %s: not a version %d plan\n", path, PLAN_VERSION);
		goto out;
	}
	v = mead_json_get(doc, root, "config");
	if (!v || v->type != MEAD_JSON_STRING)
		goto bad;
	p.config = xstrdup(v->s);
	if (strings_from(doc, mead_json_get(doc, root, "set"), p.set, MAX_LIST, &p.n_set) < 0 ||
	    strings_from(doc, mead_json_get(doc, root, "readout_args"), p.readout_args, MAX_LIST,
			 &p.n_readout_args) < 0)
		goto bad;
	p.timeout_s = mead_json_number_at(doc, root, "timeout_seconds", 0);
	for (int i = 0; i < MAX_PARAMS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "param%d", i);
		const struct mead_json_value *o = mead_json_get(doc, root, name);
		if (!o)
			break;
		const struct mead_json_value *k = mead_json_get(doc, o, "key");
		if (!k || k->type != MEAD_JSON_STRING)
			goto bad;
		struct param *pr = &p.params[p.n_params++];
		pr->key = xstrdup(k->s);
		pr->values = calloc(MAX_VALUES, sizeof(char *));
		if (!pr->values || strings_from(doc, mead_json_get(doc, o, "values"), pr->values, MAX_VALUES, &pr->n) < 0 ||
		    pr->n == 0)
			goto bad;
	}
	p.first_seed = (int)mead_json_number_at(doc, root, "first_seed", 0);
	p.seeds = (int)mead_json_number_at(doc, root, "seeds", 0);
	p.points = 1;
	for (int i = 0; i < p.n_params; i++)
		p.points *= p.params[i].n;
	p.tasks = p.points * p.seeds;
	if (p.seeds < 1 || p.first_seed < 1 || mead_json_number_at(doc, root, "tasks", -1) != (double)p.tasks)
		goto bad;
	*ret = p;
	if (ret_text)
		*ret_text = text;
	else
		free(text);
	text = NULL;
	rc = 0;
	goto out;
bad:
	fprintf(stderr, "mead-experiment: %s: not a plan this program wrote (a member is missing or wrong)\n", path);
	plan_free(&p);
out:
	mead_json_free(doc);
	free(text);
	free(path);
	return rc;
}

/* ---- rows ---- */

static char *row_path(const char *dir, long t)
{
	return xasprintf("%s/rows/task-%ld.json", dir, t);
}

static char *failed_path(const char *dir, long t)
{
	return xasprintf("%s/rows/task-%ld.failed", dir, t);
}

static char *log_path(const char *dir, long t)
{
	return xasprintf("%s/logs/task-%ld.log", dir, t);
}

/* A row that exists, parses, and is the row of task t of this plan. */
static bool row_load(const char *dir, const struct plan *p, long t, struct row *r)
{
	char *path = row_path(dir, t), err[128];
	size_t len;
	char *text = read_file(path, &len);
	struct mead_json *doc = NULL;
	bool ok = false;

	memset(r, 0, sizeof(*r));
	r->accuracy = r->readout_accuracy = r->pixel_baseline = r->best_validation = r->wall_s = NAN;
	if (text && mead_json_parse(text, len, &MEAD_JSON_DOCUMENT_LIMITS, &doc, err, sizeof(err)) == 0) {
		const struct mead_json_value *root = mead_json_root(doc);
		const struct mead_json_value *st = mead_json_get(doc, root, "status");
		ok = st && st->type == MEAD_JSON_STRING && !strcmp(st->s, "ok") &&
		     mead_json_number_at(doc, root, "task", -1) == (double)t &&
		     mead_json_number_at(doc, root, "point", -1) == (double)task_point(p, t) &&
		     mead_json_number_at(doc, root, "seed", -1) == (double)task_seed(p, t);
		const struct mead_json_value *pv = mead_json_get(doc, root, "params");
		for (int k = 0; ok && k < p->n_params; k++) {
			const struct mead_json_value *v = mead_json_get(doc, pv, p->params[k].key);
			ok = v && v->type == MEAD_JSON_STRING && !strcmp(v->s, point_value(p, task_point(p, t), k));
		}
		if (ok) {
			r->accuracy = mead_json_number_at(doc, root, "accuracy", NAN);
			r->readout_accuracy = mead_json_number_at(doc, root, "readout_accuracy", NAN);
			r->pixel_baseline = mead_json_number_at(doc, root, "pixel_baseline", NAN);
			r->best_validation = mead_json_number_at(doc, root, "best_validation", NAN);
			r->n = (unsigned)mead_json_number_at(doc, root, "n", 0);
			r->wall_s = mead_json_number_at(doc, root, "wall_seconds", NAN);
		}
	}
	r->ok = ok;
	mead_json_free(doc);
	free(text);
	free(path);
	if (!ok) {
		char *fp = failed_path(dir, t);
		char *why = read_file(fp, NULL);
		if (why) {
			why[strcspn(why, "\n")] = '\0';
			snprintf(r->why, sizeof(r->why), "%s", why);
		}
		free(why);
		free(fp);
	}
	return ok;
}

static void jw_params(struct mead_jw *w, const struct plan *p, long point)
{
	mead_jw_obj_begin(w);
	for (int k = 0; k < p->n_params; k++) {
		mead_jw_key(w, p->params[k].key);
		mead_jw_str(w, point_value(p, point, k));
	}
	mead_jw_obj_end(w);
}

static const char *row_status(const struct row *r)
{
	return r->ok ? "ok" : r->why[0] ? "failed" : "missing";
}

/* One task's row, as rows/task-T.json and results.json both hold it. */
static void jw_row(struct mead_jw *w, const struct plan *p, long t, const struct row *r)
{
	mead_jw_obj_begin(w);
	mead_jw_key(w, "task");
	mead_jw_i64(w, t);
	mead_jw_key(w, "point");
	mead_jw_i64(w, task_point(p, t));
	mead_jw_key(w, "seed");
	mead_jw_i64(w, task_seed(p, t));
	mead_jw_key(w, "params");
	jw_params(w, p, task_point(p, t));
	mead_jw_key(w, "accuracy");
	mead_jw_double(w, r->accuracy);
	mead_jw_key(w, "readout_accuracy");
	mead_jw_double(w, r->readout_accuracy);
	mead_jw_key(w, "pixel_baseline");
	mead_jw_double(w, r->pixel_baseline);
	mead_jw_key(w, "best_validation");
	mead_jw_double(w, r->best_validation);
	mead_jw_key(w, "n");
	if (r->ok)
		mead_jw_u64(w, r->n);
	else
		mead_jw_null(w);
	mead_jw_key(w, "wall_seconds");
	mead_jw_double(w, r->wall_s);
	mead_jw_key(w, "status");
	mead_jw_str(w, row_status(r));
	if (r->why[0]) {
		mead_jw_key(w, "error");
		mead_jw_str(w, r->why);
	}
	mead_jw_obj_end(w);
}

static int row_write(const char *dir, const struct plan *p, long t, const struct row *r)
{
	static char buf[1 << 16];
	struct mead_jw w;

	mead_jw_init(&w, buf, sizeof(buf));
	jw_row(&w, p, t, r);
	int n = mead_jw_finish(&w);
	if (n < 0 || (size_t)n + 1 >= sizeof(buf))
		return -ENOSPC;
	buf[n] = '\n';
	char *path = row_path(dir, t);
	int rc = write_atomic(path, buf, (size_t)n + 1);
	free(path);
	return rc;
}

/* ---- running one task ---- */

static const char *self_exe(void)
{
	static char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n <= 0)
		return "mead-experiment";
	buf[n] = '\0';
	return buf;
}

/* The mnist command of point `point` over seeds first..first+count-1. */
static char **mnist_argv(const struct plan *p, const char *exe, long point, int first, int count, bool json)
{
	int max = 16 + 2 * (p->n_set + p->n_params + p->n_readout_args), n = 0;
	char **a = calloc((size_t)max, sizeof(char *));
	if (!a) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
	a[n++] = xstrdup(exe);
	a[n++] = xstrdup("mnist");
	a[n++] = xstrdup("-c");
	a[n++] = xstrdup(p->config);
	for (int i = 0; i < p->n_set; i++) {
		a[n++] = xstrdup("-o");
		a[n++] = xstrdup(p->set[i]);
	}
	for (int k = 0; k < p->n_params; k++) {
		a[n++] = xstrdup("-o");
		a[n++] = xasprintf("%s=%s", p->params[k].key, point_value(p, point, k));
	}
	if (json)
		a[n++] = xstrdup("--json");
	a[n++] = xstrdup("--seeds");
	a[n++] = xasprintf("%d", count);
	a[n++] = xstrdup("--first-seed");
	a[n++] = xasprintf("%d", first);
	if (p->timeout_s > 0) {
		a[n++] = xstrdup("--timeout");
		a[n++] = xasprintf("%g", p->timeout_s);
	}
	for (int i = 0; i < p->n_readout_args; i++)
		a[n++] = xasprintf("--readout-arg=%s", p->readout_args[i]);
	a[n] = NULL;
	return a;
}

static void argv_free(char **a)
{
	for (int i = 0; a && a[i]; i++)
		free(a[i]);
	free(a);
}

/* Starts task t: the mnist experiment in its own process group (so that
 * stopping a task stops its daemon and readout too), its result on
 * logs/task-T.out, its messages on logs/task-T.log. */
static pid_t task_start(const char *dir, const struct plan *p, long t)
{
	char **a = mnist_argv(p, self_exe(), task_point(p, t), task_seed(p, t), 1, true);
	char *out = xasprintf("%s/logs/task-%ld.out", dir, t), *log = log_path(dir, t), *fp = failed_path(dir, t);
	unlink(fp);
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int e = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (o < 0 || e < 0) {
			fprintf(stderr, "mead-experiment: task %ld: cannot open %s: %s\n", t, o < 0 ? out : log,
				strerror(errno));
			_exit(127);
		}
		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		execv(a[0], a);
		fprintf(stderr, "mead-experiment: cannot run %s: %s\n", a[0], strerror(errno));
		_exit(127);
	}
	if (pid > 0)
		setpgid(pid, pid);   /* both sides, whichever runs first */
	argv_free(a);
	free(out);
	free(log);
	free(fp);
	return pid;
}

/* Task t's child ended with status: its row, or its failure marker.
 * Returns true when the row was written. */
static bool task_finish(const char *dir, const struct plan *p, long t, int status, double wall_s)
{
	char *out = xasprintf("%s/logs/task-%ld.out", dir, t), *log = log_path(dir, t), why[512] = "";
	struct row r = { 0 };
	bool ok = false;

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(why, sizeof(why), "mead-experiment mnist ended with %s %d; log %s",
			 WIFEXITED(status) ? "status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			 log);
	} else {
		size_t len;
		char *text = read_file(out, &len), err[128];
		struct mead_json *doc = NULL;
		if (text && mead_json_parse(text, len, &MEAD_JSON_DOCUMENT_LIMITS, &doc, err, sizeof(err)) == 0) {
			const struct mead_json_value *s0 = mead_json_at(doc, mead_json_get(doc, mead_json_root(doc), "per_seed"), 0);
			if (s0 && mead_json_number_at(doc, s0, "seed", -1) == task_seed(p, t)) {
				r.accuracy = mead_json_number_at(doc, s0, "accuracy", NAN);
				r.readout_accuracy = mead_json_number_at(doc, s0, "readout_accuracy", NAN);
				r.pixel_baseline = mead_json_number_at(doc, s0, "pixel_baseline", NAN);
				r.best_validation = mead_json_number_at(doc, s0, "best_validation", NAN);
				r.n = (unsigned)mead_json_number_at(doc, s0, "n", 0);
				r.wall_s = wall_s;
				r.ok = true;
				int rc = row_write(dir, p, t, &r);
				if (rc < 0)
					snprintf(why, sizeof(why), "cannot write the row: %s", strerror(-rc));
				else
					ok = true;
			} else {
				snprintf(why, sizeof(why), "its result has no row for seed %d; log %s", task_seed(p, t), log);
			}
		} else {
			snprintf(why, sizeof(why), "its result (%s) is not JSON; log %s", out, log);
		}
		mead_json_free(doc);
		free(text);
	}
	if (ok) {
		unlink(out);
	} else {
		char *fp = failed_path(dir, t);
		char line[600];
		int n = snprintf(line, sizeof(line), "%s\n", why);
		write_atomic(fp, line, (size_t)n);
		free(fp);
	}
	free(out);
	free(log);
	return ok;
}

/* ---- validation ---- */

/* The daemon's own check of the configuration with these overrides: it
 * knows every key, the driver's options included. */
static int check_config(const struct plan *p, const char *key, const char *value)
{
	const char *mead = mead_experiment_program("MEAD_BIN", "daemon/mead", MEAD_SBINDIR "/mead");
	int n = 0, pipefd[2], status = 0;
	char *a[2 * MAX_LIST + 8], *kv = key ? xasprintf("%s=%s", key, value) : NULL;

	a[n++] = (char *)mead;
	a[n++] = "-c";
	a[n++] = p->config;
	for (int i = 0; i < p->n_set; i++) {
		a[n++] = "-o";
		a[n++] = p->set[i];
	}
	if (kv) {
		a[n++] = "-o";
		a[n++] = kv;
	}
	a[n++] = "--check";
	a[n] = NULL;
	if (pipe(pipefd) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDERR_FILENO);
		int nul = open("/dev/null", O_WRONLY);
		if (nul >= 0)
			dup2(nul, STDOUT_FILENO);
		execv(a[0], a);
		fprintf(stderr, "cannot run %s: %s\n", a[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	char msg[4096];
	size_t m = 0;
	ssize_t k;
	while ((k = read(pipefd[0], msg + m, sizeof(msg) - 1 - m)) > 0 || (k < 0 && errno == EINTR))
		if (k > 0)
			m += (size_t)k;
	msg[m] = '\0';
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	free(kv);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (key)
		fprintf(stderr, "mead-experiment: -p %s: the value %s is refused: %s", key, value, m ? msg : "(no message)\n");
	else
		fprintf(stderr, "mead-experiment: %s", m ? msg : "the configuration is refused\n");
	return -EINVAL;
}

/* ---- gathering ---- */

struct point_stats {
	int ok;
	double m[2], sd[2], lo[2], hi[2];   /* culture accuracy, readout accuracy */
};

static void csv_field(FILE *f, const char *s)
{
	if (strpbrk(s, ",\"\n")) {
		fputc('"', f);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else {
		fputs(s, f);
	}
}

static void csv_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, ",%.6g", v);
	else
		fputs(",", f);
}

/* Shell words as a person pastes them. */
static void print_quoted(FILE *f, const char *s)
{
	bool plain = *s != '\0';
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("_-./=:,+@%", *c))
			plain = false;
	if (plain) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	}
	fputc('\'', f);
}

static void print_command(FILE *f, const struct plan *p, long point)
{
	char **a = mnist_argv(p, "mead-experiment", point, p->first_seed, p->seeds, false);
	for (int i = 0; a[i]; i++) {
		if (i)
			fputc(' ', f);
		print_quoted(f, a[i]);
	}
	argv_free(a);
}

static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* viridis, by five of its colours */
static void colour(double t, char out[8])
{
	static const int c[5][3] = { { 68, 1, 84 }, { 59, 82, 139 }, { 33, 145, 140 }, { 94, 201, 98 }, { 253, 231, 37 } };
	t = isfinite(t) ? fmin(1, fmax(0, t)) : 0;
	double x = t * 4;
	int i = (int)fmin(3, floor(x));
	double u = x - i;
	snprintf(out, 8, "#%02x%02x%02x", (int)lround(c[i][0] + u * (c[i + 1][0] - c[i][0])),
		 (int)lround(c[i][1] + u * (c[i + 1][1] - c[i][1])), (int)lround(c[i][2] + u * (c[i + 1][2] - c[i][2])));
}

#define SVG_W 900
#define SVG_H 700

static void svg_text(FILE *f, double x, double y, const char *anchor, int size, const char *extra, const char *s)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s>", x, y, anchor, size, extra);
	xml_text(f, s);
	fputs("</text>\n", f);
}

/* One swept parameter (or none): means with sd bars and every seed's dot,
 * culture rule and readout side by side. */
static void svg_line(FILE *f, const struct plan *p, const struct row *rows, const struct point_stats *ps, long best,
		     const char *title)
{
	const double L = 90, R = SVG_W - 40, T = 80, B = SVG_H - 120;
	long nx = p->points;
	double lo = INFINITY, hi = -INFINITY;
	for (long t = 0; t < p->tasks; t++)
		if (rows[t].ok)
			for (int s = 0; s < 2; s++) {
				double v = s ? rows[t].readout_accuracy : rows[t].accuracy;
				if (isfinite(v)) {
					lo = fmin(lo, v);
					hi = fmax(hi, v);
				}
			}
	if (!isfinite(lo)) {
		lo = 0;
		hi = 1;
	}
	lo = fmax(0, floor((lo - 0.02) * 20) / 20);
	hi = fmin(1, ceil((hi + 0.02) * 20) / 20);
	if (hi <= lo)
		hi = lo + 0.05;
#define X(i) (L + ((double)(i) + 0.5) * (R - L) / (double)nx)
#define Y(v) (B - ((v) - lo) / (hi - lo) * (B - T))
	svg_text(f, SVG_W / 2.0, 36, "middle", 20, " font-weight=\"bold\"", title);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
		R - L, B - T);
	for (int k = 0; k <= 5; k++) {
		double v = lo + (hi - lo) * k / 5;
		char s[32];
		snprintf(s, sizeof(s), "%.3f", v);
		fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, R, Y(v), Y(v));
		svg_text(f, L - 8, Y(v) + 4, "end", 12, "", s);
	}
	fprintf(f, "<text x=\"24\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 24 %.1f)\">"
		"test accuracy</text>\n", (T + B) / 2, (T + B) / 2);
	const char *cols[2] = { "#1f77b4", "#ff7f0e" };
	for (int s = 0; s < 2; s++) {
		double off = (s ? 0.12 : -0.12) * (R - L) / (double)nx;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" opacity=\"0.6\" points=\"", cols[s]);
		for (long i = 0; i < nx; i++)
			if (isfinite(ps[i].m[s]))
				fprintf(f, "%.1f,%.1f ", X(i) + off, Y(ps[i].m[s]));
		fputs("\"/>\n", f);
		for (long i = 0; i < nx; i++) {
			for (int k = 0; k < p->seeds; k++) {
				const struct row *r = &rows[i * p->seeds + k];
				double v = s ? r->readout_accuracy : r->accuracy;
				if (r->ok && isfinite(v))
					fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\" opacity=\"0.35\"/>\n",
						X(i) + off * 2, Y(v), cols[s]);
			}
			if (!isfinite(ps[i].m[s]))
				continue;
			fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
				X(i) + off, X(i) + off, Y(fmax(lo, ps[i].m[s] - ps[i].sd[s])),
				Y(fmin(hi, ps[i].m[s] + ps[i].sd[s])), cols[s]);
			fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", X(i) + off, Y(ps[i].m[s]), cols[s]);
		}
	}
	if (best >= 0) {
		int s = isfinite(ps[best].m[0]) ? 0 : 1;
		double off = (s ? 0.12 : -0.12) * (R - L) / (double)nx;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"11\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2.5\"/>\n",
			X(best) + off, Y(ps[best].m[s]));
		svg_text(f, X(best) + off, Y(ps[best].m[s]) - 16, "middle", 13, " fill=\"#d62728\" font-weight=\"bold\"", "best");
	}
	bool rotate = nx > 8;
	for (long i = 0; i < nx; i++) {
		const char *lab = p->n_params ? point_value(p, i, 0) : "(one point)";
		if (rotate)
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\" transform=\"rotate(-45 %.1f %.1f)\">",
				X(i), B + 16, X(i), B + 16);
		else
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", X(i), B + 18);
		xml_text(f, lab);
		fputs("</text>\n", f);
	}
	svg_text(f, (L + R) / 2, B + (rotate ? 70 : 44), "middle", 14, "", p->n_params ? p->params[0].key : "");
	/* legend */
	double ly = SVG_H - 30;
	bool culture = false;
	for (long i = 0; i < nx; i++)
		culture |= isfinite(ps[i].m[0]);
	for (int s = 0; s < 2; s++) {
		double lx = L + s * 400;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>\n", lx, ly - 4, cols[s]);
		svg_text(f, lx + 10, ly, "start", 13, "",
			 s ? "readout accuracy: mean, \xc2\xb1sd, each seed"
			   : culture ? "culture rule accuracy: mean, \xc2\xb1sd, each seed"
				     : "culture rule accuracy: none (no culture rule here)");
	}
#undef X
#undef Y
}

/* Two parameters: a heat map of the metric, each cell the mean over its
 * points and seeds (over the other parameters too when there are more). */
static void svg_heat(FILE *f, const struct plan *p, const struct point_stats *ps, long best, int metric, int ka, int kb,
		     const char *title)
{
	const double L = 170, R = SVG_W - 150, T = 80, B = SVG_H - 110;
	int na = p->params[ka].n, nb = p->params[kb].n;
	double *sum = calloc((size_t)na * nb, sizeof(double)), *sd = calloc((size_t)na * nb, sizeof(double));
	int *cnt = calloc((size_t)na * nb, sizeof(int));
	if (!sum || !sd || !cnt) {
		free(sum);
		free(sd);
		free(cnt);
		return;
	}
	for (long i = 0; i < p->points; i++)
		if (isfinite(ps[i].m[metric])) {
			int c = value_index(p, i, ka) * nb + value_index(p, i, kb);
			sum[c] += ps[i].m[metric];
			sd[c] += ps[i].sd[metric];
			cnt[c]++;
		}
	double lo = INFINITY, hi = -INFINITY;
	for (int c = 0; c < na * nb; c++)
		if (cnt[c]) {
			sum[c] /= cnt[c];
			sd[c] /= cnt[c];
			lo = fmin(lo, sum[c]);
			hi = fmax(hi, sum[c]);
		}
	if (!isfinite(lo)) {
		lo = 0;
		hi = 1;
	}
	if (hi - lo < 1e-3) {
		lo -= 0.005;
		hi += 0.005;
	}
	svg_text(f, SVG_W / 2.0, 36, "middle", 20, " font-weight=\"bold\"", title);
	double cw = (R - L) / na, ch = (B - T) / nb;
	for (int a = 0; a < na; a++)
		for (int b = 0; b < nb; b++) {
			int c = a * nb + b;
			double x = L + a * cw, y = B - (b + 1) * ch, t = (sum[c] - lo) / (hi - lo);
			char col[8];
			colour(t, col);
			fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#fff\"/>\n", x, y,
				cw, ch, cnt[c] ? col : "#ccc");
			if (cw > 44 && ch > 18) {
				char s[48];
				if (!cnt[c])
					snprintf(s, sizeof(s), "-");
				else if (cw > 90 && p->seeds > 1)
					snprintf(s, sizeof(s), "%.3f \xc2\xb1%.3f", sum[c], sd[c]);
				else
					snprintf(s, sizeof(s), "%.3f", sum[c]);
				svg_text(f, x + cw / 2, y + ch / 2 + 4, "middle", cw > 90 ? 13 : 10,
					 t < 0.55 ? " fill=\"#fff\"" : " fill=\"#000\"", s);
			}
		}
	if (best >= 0) {
		int a = value_index(p, best, ka), b = value_index(p, best, kb);
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#d62728\" "
			"stroke-width=\"4\"/>\n", L + a * cw + 2, B - (b + 1) * ch + 2, cw - 4, ch - 4);
	}
	bool rotate = na > 8;
	for (int a = 0; a < na; a++) {
		double x = L + (a + 0.5) * cw;
		if (rotate)
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\" transform=\"rotate(-45 %.1f %.1f)\">",
				x, B + 16, x, B + 16);
		else
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", x, B + 18);
		xml_text(f, p->params[ka].values[a]);
		fputs("</text>\n", f);
	}
	for (int b = 0; b < nb; b++)
		svg_text(f, L - 8, B - (b + 0.5) * ch + 4, "end", 12, "", p->params[kb].values[b]);
	svg_text(f, (L + R) / 2, B + (rotate ? 70 : 44), "middle", 14, "", p->params[ka].key);
	fprintf(f, "<text x=\"30\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 30 %.1f)\">",
		(T + B) / 2, (T + B) / 2);
	xml_text(f, p->params[kb].key);
	fputs("</text>\n", f);
	/* colour scale */
	double sx = R + 40, sw = 22;
	fputs("<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">", f);
	for (int k = 0; k <= 8; k++) {
		char col[8];
		colour(k / 8.0, col);
		fprintf(f, "<stop offset=\"%.3f\" stop-color=\"%s\"/>", k / 8.0, col);
	}
	fputs("</linearGradient></defs>\n", f);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"url(#scale)\" stroke=\"#444\"/>\n", sx,
		T, sw, B - T);
	for (int k = 0; k <= 5; k++) {
		char s[32];
		snprintf(s, sizeof(s), "%.3f", lo + (hi - lo) * k / 5);
		svg_text(f, sx + sw + 6, B - k * (B - T) / 5 + 4, "start", 12, "", s);
	}
	svg_text(f, sx + sw / 2, T - 10, "middle", 12, "", metric ? "readout" : "accuracy");
	char cap[512];
	int n = snprintf(cap, sizeof(cap), "cell: mean %s over %d seed%s", metric ? "readout accuracy" : "culture rule accuracy",
			 p->seeds, p->seeds > 1 ? "s (\xc2\xb1 mean sd)" : "");
	if (p->n_params > 2) {
		n += snprintf(cap + n, sizeof(cap) - (size_t)n, " and over");
		for (int k = 0; k < p->n_params && n < (int)sizeof(cap) - 80; k++)
			if (k != ka && k != kb)
				n += snprintf(cap + n, sizeof(cap) - (size_t)n, " %s", p->params[k].key);
	}
	snprintf(cap + n, sizeof(cap) - (size_t)n, "; red frame: the best point");
	svg_text(f, SVG_W / 2.0, SVG_H - 30, "middle", 12, "", cap);
	free(sum);
	free(sd);
	free(cnt);
}

/* How much a parameter moves the metric: the range of its values' means. */
static double influence(const struct plan *p, const struct point_stats *ps, int metric, int k)
{
	double lo = INFINITY, hi = -INFINITY;
	for (int v = 0; v < p->params[k].n; v++) {
		double s = 0;
		int c = 0;
		for (long i = 0; i < p->points; i++)
			if (value_index(p, i, k) == v && isfinite(ps[i].m[metric])) {
				s += ps[i].m[metric];
				c++;
			}
		if (c) {
			lo = fmin(lo, s / c);
			hi = fmax(hi, s / c);
		}
	}
	return isfinite(lo) ? hi - lo : 0;
}

static int write_svg(const char *dir, const struct plan *p, const struct row *rows, const struct point_stats *ps,
		     long best, int metric)
{
	char *path = xasprintf("%s/landscape.svg", dir), *tmp;
	FILE *f = atomic_open(path, &tmp);
	if (!f)
		goto out;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		"font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n", SVG_W, SVG_H, SVG_W, SVG_H);
	char title[256];
	const char *cfg = strrchr(p->config, '/') ? strrchr(p->config, '/') + 1 : p->config;
	snprintf(title, sizeof(title), "MNIST sweep: %s, %ld point%s \xc3\x97 %d seed%s", cfg, p->points,
		 p->points == 1 ? "" : "s", p->seeds, p->seeds == 1 ? "" : "s");
	if (p->n_params <= 1) {
		svg_line(f, p, rows, ps, best, title);
	} else {
		int ka = 0, kb = 1;
		if (p->n_params > 2) {
			double ia = -1, ib = -1;
			for (int k = 0; k < p->n_params; k++) {
				double v = influence(p, ps, metric, k);
				if (v > ia) {
					kb = ka;
					ib = ia;
					ka = k;
					ia = v;
				} else if (v > ib) {
					kb = k;
					ib = v;
				}
			}
			if (ka > kb) {   /* keep the command line's order on the axes */
				int x = ka;
				ka = kb;
				kb = x;
			}
		}
		svg_heat(f, p, ps, best, metric, ka, kb, title);
	}
	fputs("</svg>\n", f);
out:;
	int rc = atomic_close(f, tmp, path);
	free(path);
	return rc;
}

static int write_csv(const char *dir, const struct plan *p, const struct row *rows)
{
	char *path = xasprintf("%s/results.csv", dir), *tmp;
	FILE *f = atomic_open(path, &tmp);
	if (!f)
		goto out;
	fputs("task,point", f);
	for (int k = 0; k < p->n_params; k++) {
		fputc(',', f);
		csv_field(f, p->params[k].key);
	}
	fputs(",seed,accuracy,readout_accuracy,pixel_baseline,best_validation,n,wall_seconds,status\n", f);
	for (long t = 0; t < p->tasks; t++) {
		const struct row *r = &rows[t];
		fprintf(f, "%ld,%ld", t, task_point(p, t));
		for (int k = 0; k < p->n_params; k++) {
			fputc(',', f);
			csv_field(f, point_value(p, task_point(p, t), k));
		}
		fprintf(f, ",%d", task_seed(p, t));
		csv_num(f, r->accuracy);
		csv_num(f, r->readout_accuracy);
		csv_num(f, r->pixel_baseline);
		csv_num(f, r->best_validation);
		if (r->ok)
			fprintf(f, ",%u", r->n);
		else
			fputs(",", f);
		csv_num(f, r->wall_s);
		fprintf(f, ",%s\n", row_status(r));
	}
out:;
	int rc = atomic_close(f, tmp, path);
	free(path);
	return rc;
}

static void jw_stat(struct mead_jw *w, const char *name, const struct point_stats *s, int k)
{
	mead_jw_key(w, name);
	mead_jw_obj_begin(w);
	mead_jw_key(w, "mean");
	mead_jw_double(w, s->m[k]);
	mead_jw_key(w, "sd");
	mead_jw_double(w, isfinite(s->m[k]) ? s->sd[k] : NAN);
	mead_jw_key(w, "min");
	mead_jw_double(w, s->lo[k]);
	mead_jw_key(w, "max");
	mead_jw_double(w, s->hi[k]);
	mead_jw_obj_end(w);
}

static int write_json(const char *dir, const struct plan *p, const struct row *rows, const struct point_stats *ps,
		      long best, int metric)
{
	size_t cap = 65536 + (size_t)p->tasks * 1024 + (size_t)p->points * 1024;
	for (int k = 0; k < p->n_params; k++)
		cap += (size_t)p->tasks * (strlen(p->params[k].key) + 64);
	char *buf = malloc(cap);
	struct mead_jw w;
	int rc;
	if (!buf)
		return -ENOMEM;
	mead_jw_init(&w, buf, cap);
	mead_jw_obj_begin(&w);
	mead_jw_key(&w, "config");
	mead_jw_str(&w, p->config);
	mead_jw_key(&w, "set");
	jw_strings(&w, p->set, p->n_set);
	mead_jw_key(&w, "params");
	mead_jw_arr_begin(&w);
	for (int k = 0; k < p->n_params; k++) {
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "key");
		mead_jw_str(&w, p->params[k].key);
		mead_jw_key(&w, "values");
		jw_strings(&w, p->params[k].values, p->params[k].n);
		mead_jw_obj_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "seeds");
	mead_jw_arr_begin(&w);
	for (int s = 0; s < p->seeds; s++)
		mead_jw_i64(&w, p->first_seed + s);
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "rows");
	mead_jw_arr_begin(&w);
	for (long t = 0; t < p->tasks; t++)
		jw_row(&w, p, t, &rows[t]);
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "points");
	mead_jw_arr_begin(&w);
	for (long i = 0; i < p->points; i++) {
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "point");
		mead_jw_i64(&w, i);
		mead_jw_key(&w, "params");
		jw_params(&w, p, i);
		mead_jw_key(&w, "seeds_ok");
		mead_jw_i64(&w, ps[i].ok);
		jw_stat(&w, "accuracy", &ps[i], 0);
		jw_stat(&w, "readout_accuracy", &ps[i], 1);
		mead_jw_obj_end(&w);
	}
	mead_jw_arr_end(&w);
	mead_jw_key(&w, "best");
	if (best >= 0) {
		mead_jw_obj_begin(&w);
		mead_jw_key(&w, "by");
		mead_jw_str(&w, metric ? "readout_accuracy" : "accuracy");
		mead_jw_key(&w, "point");
		mead_jw_i64(&w, best);
		mead_jw_key(&w, "params");
		jw_params(&w, p, best);
		mead_jw_key(&w, "seeds_ok");
		mead_jw_i64(&w, ps[best].ok);
		jw_stat(&w, "accuracy", &ps[best], 0);
		jw_stat(&w, "readout_accuracy", &ps[best], 1);
		mead_jw_key(&w, "command");
		char *cmd = NULL;
		size_t cl = 0;
		FILE *m = open_memstream(&cmd, &cl);
		if (m) {
			print_command(m, p, best);
			fclose(m);
		}
		mead_jw_str(&w, cmd ? cmd : "");
		free(cmd);
		mead_jw_obj_end(&w);
	} else {
		mead_jw_null(&w);
	}
	mead_jw_obj_end(&w);
	int n = mead_jw_finish(&w);
	if (n < 0 || (size_t)n + 1 >= cap) {
		free(buf);
		return -ENOSPC;
	}
	buf[n] = '\n';
	char *path = xasprintf("%s/results.json", dir);
	rc = write_atomic(path, buf, (size_t)n + 1);
	free(path);
	free(buf);
	return rc;
}

static void print_point(FILE *f, const struct plan *p, long i)
{
	for (int k = 0; k < p->n_params; k++)
		fprintf(f, "%s%s=%s", k ? " " : "", p->params[k].key, point_value(p, i, k));
	if (!p->n_params)
		fputs("(the configuration as given)", f);
}

/* Whether an sbatch --array list ("0-3,5%2") holds index t. */
static bool spec_holds(const char *spec, long t)
{
	const char *c = spec;
	while (*c && *c != '%') {
		char *end;
		long a = strtol(c, &end, 10), b = a;
		if (end == c)
			return false;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		if (t >= a && t <= b)
			return true;
		c = *end == ',' ? end + 1 : end;
	}
	return false;
}

/* The Slurm log of the last array element that ran task t, if any. */
static char *slurm_log(const char *dir, long t)
{
	char *jobs = xasprintf("%s/slurm-jobs", dir), *text = read_file(jobs, NULL), *found = NULL;
	free(jobs);
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		long job;
		char spec[4096];
		if (sscanf(line, "%ld %4095s", &job, spec) == 2 && spec_holds(spec, t)) {
			free(found);
			found = xasprintf("%s/logs/slurm-%ld_%ld.out", dir, job, t);
		}
	}
	free(text);
	return found;
}

/* Rows to tables, picture and summary.  Returns 0 when every task has its
 * row, 3 when some have not (the tables are written either way). */
static int gather(const char *dir, const struct plan *p)
{
	struct row *rows = calloc((size_t)p->tasks, sizeof(*rows));
	struct point_stats *ps = calloc((size_t)p->points, sizeof(*ps));
	double *v = calloc((size_t)p->seeds, sizeof(double));
	long n_ok = 0, n_failed = 0, best = -1;
	int metric = 0, rc;

	if (!rows || !ps || !v) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
	for (long t = 0; t < p->tasks; t++) {
		if (row_load(dir, p, t, &rows[t]))
			n_ok++;
		else if (rows[t].why[0])
			n_failed++;
	}
	bool any_culture = false;
	for (long i = 0; i < p->points; i++) {
		for (int m = 0; m < 2; m++) {
			int c = 0;
			for (int s = 0; s < p->seeds; s++) {
				const struct row *r = &rows[i * p->seeds + s];
				v[s] = r->ok ? (m ? r->readout_accuracy : r->accuracy) : NAN;
				c += r->ok;
			}
			ps[i].ok = c;
			mead_experiment_stats(v, p->seeds, &ps[i].m[m], &ps[i].sd[m], &ps[i].lo[m], &ps[i].hi[m]);
		}
		any_culture |= isfinite(ps[i].m[0]);
	}
	/* no culture rule (e.g. 10 classes): the best by the readout */
	metric = any_culture ? 0 : 1;
	for (long i = 0; i < p->points; i++)
		if (isfinite(ps[i].m[metric]) &&
		    (best < 0 || ps[i].m[metric] > ps[best].m[metric] ||
		     (ps[i].m[metric] == ps[best].m[metric] && ps[i].m[1 - metric] > ps[best].m[1 - metric])))
			best = i;

	int e;
	if ((e = write_csv(dir, p, rows)) < 0 || (e = write_json(dir, p, rows, ps, best, metric)) < 0 ||
	    (e = write_svg(dir, p, rows, ps, best, metric)) < 0)
		fprintf(stderr, "mead-experiment: cannot write the results in %s: %s\n", dir, strerror(-e));

	printf("sweep: %ld point%s x %d seed%s = %ld tasks: %ld ok, %ld failed, %ld not run\n", p->points,
	       p->points == 1 ? "" : "s", p->seeds, p->seeds == 1 ? "" : "s", p->tasks, n_ok, n_failed,
	       p->tasks - n_ok - n_failed);
	long shown = p->points <= 40 ? p->points : 10;
	if (p->points > 40)
		printf("the 10 best points of %ld (all in results.csv):\n", p->points);
	printf("%6s  %-24s %-24s %5s  %s\n", "point", "accuracy mean sd", "readout mean sd", "seeds", "parameters");
	bool *done = calloc((size_t)p->points, 1);
	for (long k = 0; k < shown && done; k++) {
		long i = k;
		if (p->points > 40) {
			i = -1;
			for (long j = 0; j < p->points; j++)
				if (!done[j] && isfinite(ps[j].m[metric]) && (i < 0 || ps[j].m[metric] > ps[i].m[metric]))
					i = j;
			if (i < 0)
				break;
			done[i] = true;
		}
		char a[32], b[32];
		snprintf(a, sizeof(a), isfinite(ps[i].m[0]) ? "%.4f %.4f" : "-", ps[i].m[0], ps[i].sd[0]);
		snprintf(b, sizeof(b), isfinite(ps[i].m[1]) ? "%.4f %.4f" : "-", ps[i].m[1], ps[i].sd[1]);
		printf("%6ld  %-24s %-24s %2d/%-2d  ", i, a, b, ps[i].ok, p->seeds);
		print_point(stdout, p, i);
		printf("%s\n", i == best ? "   <- best" : "");
	}
	free(done);
	if (best >= 0) {
		printf("best: point %ld: ", best);
		print_point(stdout, p, best);
		printf("\n  by %s over seeds %d..%d (%d ok)\n", metric ? "readout accuracy (no culture rule)" : "culture rule accuracy",
		       p->first_seed, p->first_seed + p->seeds - 1, ps[best].ok);
		for (int m = 0; m < 2; m++)
			if (isfinite(ps[best].m[m]))
				printf("  %-16s mean %.4f  sd %.4f  min %.4f  max %.4f\n", m ? "readout_accuracy" : "accuracy",
				       ps[best].m[m], ps[best].sd[m], ps[best].lo[m], ps[best].hi[m]);
		printf("  reproduce: ");
		print_command(stdout, p, best);
		printf("\n");
	}
	for (long t = 0; t < p->tasks; t++)
		if (!rows[t].ok) {
			char *sl = slurm_log(dir, t);
			printf("%s: task %ld (point %ld, seed %d): %s", row_status(&rows[t]), t, task_point(p, t),
			       task_seed(p, t), rows[t].why[0] ? rows[t].why : "no row (not run, cancelled or still running)");
			if (sl)
				printf("; Slurm log %s%s", sl, access(sl, F_OK) == 0 ? "" : " (absent: it never started)");
			printf("\n");
			free(sl);
		}
	printf("results: %s/results.csv %s/results.json %s/landscape.svg\n", dir, dir, dir);
	rc = n_ok == p->tasks ? 0 : 3;
	free(v);
	free(ps);
	free(rows);
	return rc;
}

/* ---- running on this machine ---- */

static void fmt_duration(char *out, size_t len, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(out, len, "?");
	else if (s < 3600)
		snprintf(out, len, "%d:%02d", (int)s / 60, (int)s % 60);
	else
		snprintf(out, len, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
}

struct running {
	pid_t pid;
	long task;
	double t0;
};

static int run_local(const char *dir, const struct plan *p, const long *todo, long n_todo, int jobs)
{
	struct running *run = calloc((size_t)jobs, sizeof(*run));
	long next = 0, done = 0, failed = 0;
	int n_run = 0;
	double t0 = mead_now_s(), sum_wall = 0, last_draw = 0;
	bool tty = isatty(STDERR_FILENO);

	if (!run)
		return -ENOMEM;
	fprintf(stderr, "sweep: %ld of %ld tasks to run (%ld done before), %d at a time\n", n_todo, p->tasks,
		p->tasks - n_todo, jobs);
	for (bool first = true; first || next < n_todo || n_run > 0; first = false) {
		bool changed = false;
		for (int i = 0; i < n_run;) {
			int status;
			pid_t r = waitpid(run[i].pid, &status, WNOHANG);
			if (r != run[i].pid) {
				i++;
				continue;
			}
			double wall = mead_now_s() - run[i].t0;
			if (!stop_signal && task_finish(dir, p, run[i].task, status, wall)) {
				done++;
				sum_wall += wall;
			} else if (!stop_signal) {
				failed++;
				if (!tty)
					fprintf(stderr, "sweep: task %ld failed (log %s/logs/task-%ld.log)\n", run[i].task, dir,
						run[i].task);
			}
			run[i] = run[--n_run];
			changed = true;
		}
		if (stop_signal && next < n_todo)
			next = n_todo;   /* start nothing more */
		while (!stop_signal && next < n_todo && n_run < jobs) {
			pid_t pid = task_start(dir, p, todo[next]);
			if (pid < 0) {
				fprintf(stderr, "mead-experiment: cannot start task %ld: %s\n", todo[next], strerror(errno));
				failed++;
				next++;
				continue;
			}
			run[n_run++] = (struct running){ pid, todo[next++], mead_now_s() };
		}
		if (stop_signal && n_run > 0) {
			static bool sent;
			if (!sent)
				for (int i = 0; i < n_run; i++)
					kill(-run[i].pid, SIGTERM);
			sent = true;
		}
		double now = mead_now_s() - t0;
		if ((tty && now - last_draw > 0.5) || (!tty && changed) || (changed && n_run == 0 && next == n_todo)) {
			char el[32], eta[32];
			long left = n_todo - done - failed;
			fmt_duration(el, sizeof(el), now);
			fmt_duration(eta, sizeof(eta), done ? sum_wall / done * (double)left / jobs : NAN);
			fprintf(stderr, "%ssweep: %ld/%ld done, %d running, %ld failed, elapsed %s, ETA %s%s", tty ? "\r" : "",
				done, n_todo, n_run, failed, el, left ? eta : "0:00", tty ? "   " : "\n");
			last_draw = now;
		}
		if (n_run > 0 || next < n_todo) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	if (tty)
		fputc('\n', stderr);
	free(run);
	if (stop_signal) {
		fprintf(stderr, "sweep: stopped by signal %d; the same command resumes it\n", (int)stop_signal);
		return -EINTR;
	}
	return 0;
}

/* ---- Slurm ---- */

/* Runs argv, its standard output into out (NUL-terminated); returns the
 * exit status, or -errno when it could not run. */
static int run_capture(char *const argv[], char *out, size_t len)
{
	int pipefd[2], status;
	if (pipe(pipefd) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDOUT_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "mead-experiment: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	size_t n = 0;
	ssize_t k;
	char sink[512];
	while ((k = read(pipefd[0], n < len - 1 ? out + n : sink, n < len - 1 ? len - 1 - n : sizeof(sink))) > 0 ||
	       (k < 0 && errno == EINTR))
		if (k > 0 && n < len - 1)
			n += (size_t)k;
	out[n] = '\0';
	close(pipefd[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* "0-3,5,7-9": the indices as sbatch --array takes them. */
static char *array_spec(const long *todo, long n, int max_running)
{
	size_t cap = (size_t)n * 24 + 32, pos = 0;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (long i = 0; i < n;) {
		long j = i;
		while (j + 1 < n && todo[j + 1] == todo[j] + 1)
			j++;
		pos += (size_t)snprintf(s + pos, cap - pos, j > i ? "%s%ld-%ld" : "%s%ld", pos ? "," : "", todo[i], todo[j]);
		i = j + 1;
	}
	if (max_running > 0)
		snprintf(s + pos, cap - pos, "%%%d", max_running);
	return s;
}

static int write_sbatch(const char *dir, char **sbatch_args, int n_sbatch_args)
{
	char *path = xasprintf("%s/sweep.sbatch", dir), *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	if (!m)
		return -ENOMEM;
	fprintf(m, "#!/bin/sh\n"
		"# mead-experiment sweep: one array element runs one task of %s/plan.json\n"
		"#SBATCH --job-name=mead-sweep\n"
		"#SBATCH --output=%s/logs/slurm-%%A_%%a.out\n"
		"#SBATCH --ntasks=1\n"
		"#SBATCH --cpus-per-task=1\n", dir, dir);
	for (int i = 0; i < n_sbatch_args; i++)
		fprintf(m, "#SBATCH %s\n", sbatch_args[i]);
	fprintf(m, "exec ");
	print_quoted(m, self_exe());
	fprintf(m, " sweep --task \"$SLURM_ARRAY_TASK_ID\" ");
	print_quoted(m, dir);
	fprintf(m, "\n");
	fclose(m);
	int rc = write_atomic(path, text, len);
	if (rc == 0)
		chmod(path, 0755);
	free(text);
	free(path);
	return rc;
}

/* Submits the tasks without rows; with wait, follows the job until it has
 * left the queue and gathers. */
static int run_slurm(const char *dir, const struct plan *p, const long *todo, long n_todo, char **sbatch_args,
		     int n_sbatch_args, int max_running, bool wait)
{
	char out[4096], *spec, *script = xasprintf("%s/sweep.sbatch", dir);
	/* a job of this sweep still queued holds tasks without rows yet:
	 * submitting them again would run them twice */
	char *jobs_path = xasprintf("%s/slurm-jobs", dir), *jobs_text = read_file(jobs_path, NULL);
	free(jobs_path);
	for (char *line = jobs_text, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		long j = strtol(line, NULL, 10);
		char jid[32];
		snprintf(jid, sizeof(jid), "%ld", j);
		char *sq[] = { "squeue", "-h", "-j", jid, NULL };
		if (j > 0 && run_capture(sq, out, sizeof(out)) == 0 && out[strspn(out, " \n")] != '\0') {
			fprintf(stderr, "mead-experiment: job %ld of this sweep is still queued or running (squeue -j %ld): "
				"wait for it, or scancel %ld, then run this again\n", j, j, j);
			free(jobs_text);
			free(script);
			return 1;
		}
	}
	free(jobs_text);
	int rc = write_sbatch(dir, sbatch_args, n_sbatch_args);
	if (rc < 0) {
		fprintf(stderr, "mead-experiment: cannot write %s: %s\n", script, strerror(-rc));
		return 1;
	}
	/* sbatch refuses array indices from MaxArraySize up, after the fact
	 * and tersely: say so before */
	char *sc[] = { "scontrol", "show", "config", NULL };
	static char conf[1 << 17];
	if (run_capture(sc, conf, sizeof(conf)) == 0) {
		const char *m = strstr(conf, "MaxArraySize");
		long max_array = 0;
		if (m && sscanf(m, "MaxArraySize = %ld", &max_array) == 1 && todo[n_todo - 1] >= max_array) {
			fprintf(stderr, "mead-experiment: task %ld is beyond this cluster's MaxArraySize (%ld): array "
				"indices are task numbers, so a sweep of %ld tasks needs MaxArraySize >= %ld in "
				"slurm.conf (or a smaller sweep, e.g. split by a -p list)\n", todo[n_todo - 1], max_array,
				p->tasks, p->tasks);
			free(script);
			return 1;
		}
	}
	spec = array_spec(todo, n_todo, max_running);
	char *arr = xasprintf("--array=%s", spec ? spec : "");
	char *argv[] = { "sbatch", "--parsable", arr, script, NULL };
	rc = run_capture(argv, out, sizeof(out));
	if (rc != 0) {
		fprintf(stderr, "mead-experiment: sbatch %s %s failed (%s %d)\n", arr, script, rc < 0 ? "error" : "status",
			rc < 0 ? -rc : rc);
		return 1;
	}
	long job = strtol(out, NULL, 10);   /* "JOBID" or "JOBID;CLUSTER" */
	if (job <= 0) {
		fprintf(stderr, "mead-experiment: sbatch printed no job id: %s\n", out);
		return 1;
	}
	char *jobs = xasprintf("%s/slurm-jobs", dir);
	FILE *jf = fopen(jobs, "a");
	if (jf) {
		fprintf(jf, "%ld %s\n", job, spec);
		fclose(jf);
	}
	fprintf(stderr, "sweep: submitted Slurm job %ld, array %s (%ld task%s); logs in %s/logs/\n", job, spec, n_todo, n_todo == 1 ? "" : "s", dir);
	free(jobs);
	free(spec);
	free(arr);
	free(script);
	if (!wait) {
		printf("submitted job %ld; when it has ended: mead-experiment sweep --gather %s\n", job, dir);
		return 0;
	}
	char jid[32];
	snprintf(jid, sizeof(jid), "%ld", job);
	double t0 = mead_now_s();
	long last = -1;
	for (;;) {
		char *sq[] = { "squeue", "-h", "-j", jid, "-o", "%i %t", NULL };
		int s = run_capture(sq, out, sizeof(out));
		long done = 0, failed = 0;
		for (long i = 0; i < n_todo; i++) {
			struct row r;
			if (row_load(dir, p, todo[i], &r))
				done++;
			else if (r.why[0])
				failed++;
		}
		if (done + failed != last || stop_signal) {
			char el[32];
			fmt_duration(el, sizeof(el), mead_now_s() - t0);
			fprintf(stderr, "sweep: job %ld: %ld/%ld done, %ld failed, elapsed %s\n", job, done, n_todo, failed, el);
			last = done + failed;
		}
		/* an empty queue listing, or squeue no longer knowing the job: it has ended */
		if (s != 0 || out[strspn(out, " \n")] == '\0')
			break;
		if (stop_signal) {
			fprintf(stderr, "sweep: stopped waiting; job %ld goes on (scancel %ld to stop it); gather with "
				"mead-experiment sweep --gather %s\n", job, job, dir);
			return 130;
		}
		sleep(2);
	}
	return gather(dir, p);
}

/* ---- entry ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mead-experiment sweep -c CONFIG -d DIR [-p KEY=LIST ...] [-o key=value ...]\n"
		"                             [--seeds K] [--first-seed F] [-j N] [--timeout S] [--readout-arg ARG ...]\n"
		"                             [--slurm [--sbatch-arg ARG ...] [--max-running M] [--no-wait]]\n"
		"       mead-experiment sweep --gather DIR\n"
		"       mead-experiment sweep --task I DIR\n"
		"  runs `mead-experiment mnist` for every point (each combination of the -p values) and seed,\n"
		"  one process per core (or as a Slurm job array with --slurm), and writes DIR/results.csv,\n"
		"  DIR/results.json and DIR/landscape.svg; the same command again resumes the sweep.\n"
		"  LIST: v1,v2,... or lo:hi:step (hi included).  KEY: any configuration key, as -o takes it.\n");
}

static int mkdirs(const char *dir)
{
	char *a = xasprintf("%s/rows", dir), *b = xasprintf("%s/logs", dir);
	int rc = 0;
	if ((mkdir(dir, 0755) < 0 && errno != EEXIST) || (mkdir(a, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(b, 0755) < 0 && errno != EEXIST)) {
		rc = -errno;
		fprintf(stderr, "mead-experiment: cannot create %s: %s\n", dir, strerror(errno));
	}
	free(a);
	free(b);
	return rc;
}

static long *todo_list(const char *dir, const struct plan *p, long *ret_n)
{
	long *todo = malloc((size_t)p->tasks * sizeof(long)), n = 0;
	if (!todo) {
		fprintf(stderr, "mead-experiment: out of memory\n");
		exit(1);
	}
	for (long t = 0; t < p->tasks; t++) {
		struct row r;
		if (!row_load(dir, p, t, &r))
			todo[n++] = t;
	}
	*ret_n = n;
	return todo;
}

/* One task, here and now (what a Slurm array element runs). */
static int run_one(const char *dir, const char *task_s)
{
	struct plan p;
	char *end;
	long t = strtol(task_s, &end, 10);
	if (plan_load(dir, &p, NULL) < 0)
		return 2;
	if (end == task_s || *end || t < 0 || t >= p.tasks) {
		fprintf(stderr, "mead-experiment: --task %s: not a task of %s (0..%ld)\n", task_s, dir, p.tasks - 1);
		plan_free(&p);
		return 1;
	}
	struct row r;
	if (row_load(dir, &p, t, &r)) {
		fprintf(stderr, "sweep: task %ld has its row already\n", t);
		plan_free(&p);
		return 0;
	}
	double t0 = mead_now_s();
	pid_t pid = task_start(dir, &p, t);
	int status = 0;
	if (pid < 0) {
		plan_free(&p);
		return 1;
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			plan_free(&p);
			return 1;
		}
		if (stop_signal)
			kill(-pid, SIGTERM);
	}
	bool ok = task_finish(dir, &p, t, status, mead_now_s() - t0);
	fprintf(stderr, "sweep: task %ld (point %ld, seed %d): %s\n", t, task_point(&p, t), task_seed(&p, t),
		ok ? "ok" : "failed");
	if (!ok) {
		char *lp = log_path(dir, t);
		fprintf(stderr, "sweep: its log: %s\n", lp);
		free(lp);
	}
	plan_free(&p);
	return ok ? 0 : 1;
}

int mead_experiment_sweep(int argc, char **argv)
{
	enum { O_SLURM = 256, O_SBATCH, O_MAXRUN, O_NOWAIT, O_GATHER, O_TASK, O_SEEDS, O_FIRST, O_TIMEOUT, O_RARG };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "dir", required_argument, NULL, 'd' },
		{ "param", required_argument, NULL, 'p' }, { "set", required_argument, NULL, 'o' },
		{ "jobs", required_argument, NULL, 'j' }, { "seeds", required_argument, NULL, O_SEEDS },
		{ "first-seed", required_argument, NULL, O_FIRST }, { "timeout", required_argument, NULL, O_TIMEOUT },
		{ "readout-arg", required_argument, NULL, O_RARG }, { "slurm", no_argument, NULL, O_SLURM },
		{ "sbatch-arg", required_argument, NULL, O_SBATCH }, { "max-running", required_argument, NULL, O_MAXRUN },
		{ "no-wait", no_argument, NULL, O_NOWAIT }, { "gather", required_argument, NULL, O_GATHER },
		{ "task", required_argument, NULL, O_TASK }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct plan p = { 0 };
	const char *config = NULL, *dir = NULL, *gather_dir = NULL, *task = NULL;
	char *sbatch_args[MAX_LIST];
	int n_sbatch = 0, jobs = (int)sysconf(_SC_NPROCESSORS_ONLN), max_running = 0, c, rc = 1;
	bool slurm = false, wait = true;
	char *end;

	p.seeds = 1;
	p.first_seed = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:p:o:j:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'd': dir = optarg; break;
		case 'p':
			if (p.n_params == MAX_PARAMS) {
				fprintf(stderr, "mead-experiment: more than %d -p parameters\n", MAX_PARAMS);
				goto out;
			}
			if (parse_param(optarg, &p.params[p.n_params]) < 0)
				goto out;
			for (int k = 0; k < p.n_params; k++)
				if (!strcmp(p.params[k].key, p.params[p.n_params].key)) {
					fprintf(stderr, "mead-experiment: -p %s: the key is swept twice\n", p.params[k].key);
					p.n_params++;
					goto out;
				}
			p.n_params++;
			break;
		case 'o':
			if (!strchr(optarg, '=')) {
				fprintf(stderr, "mead-experiment: -o %s: expected key=value\n", optarg);
				goto out;
			}
			if (p.n_set == MAX_LIST) {
				fprintf(stderr, "mead-experiment: -o %s: more than %d fixed overrides\n", optarg, MAX_LIST);
				goto out;
			}
			p.set[p.n_set++] = xstrdup(optarg);
			break;
		case 'j':
			jobs = (int)strtol(optarg, &end, 10);
			if (*end || jobs < 1) {
				fprintf(stderr, "mead-experiment: -j %s: expected a number of processes >= 1\n", optarg);
				goto out;
			}
			break;
		case O_SEEDS:
			p.seeds = (int)strtol(optarg, &end, 10);
			if (*end || p.seeds < 1 || p.seeds > 100000) {
				fprintf(stderr, "mead-experiment: --seeds %s: expected 1..100000\n", optarg);
				goto out;
			}
			break;
		case O_FIRST:
			p.first_seed = (int)strtol(optarg, &end, 10);
			if (*end || p.first_seed < 1 || p.first_seed > INT_MAX / 2) {
				fprintf(stderr, "mead-experiment: --first-seed %s: expected a seed >= 1\n", optarg);
				goto out;
			}
			break;
		case O_TIMEOUT:
			if (parse_number(optarg, &p.timeout_s) < 0 || p.timeout_s < 0) {
				fprintf(stderr, "mead-experiment: --timeout %s: expected seconds >= 0\n", optarg);
				goto out;
			}
			break;
		case O_RARG:
			if (p.n_readout_args == MAX_LIST) {
				fprintf(stderr, "mead-experiment: more than %d --readout-arg\n", MAX_LIST);
				goto out;
			}
			p.readout_args[p.n_readout_args++] = xstrdup(optarg);
			break;
		case O_SLURM: slurm = true; break;
		case O_SBATCH:
			if (n_sbatch == MAX_LIST) {
				fprintf(stderr, "mead-experiment: more than %d --sbatch-arg\n", MAX_LIST);
				goto out;
			}
			sbatch_args[n_sbatch++] = optarg;
			break;
		case O_MAXRUN:
			max_running = (int)strtol(optarg, &end, 10);
			if (*end || max_running < 1) {
				fprintf(stderr, "mead-experiment: --max-running %s: expected a number >= 1\n", optarg);
				goto out;
			}
			break;
		case O_NOWAIT: wait = false; break;
		case O_GATHER: gather_dir = optarg; break;
		case O_TASK: task = optarg; break;
		case 'h': usage(stdout); rc = 0; goto out;
		default: usage(stderr); goto out;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (task) {
		if (optind != argc - 1) {
			usage(stderr);
			goto out;
		}
		rc = run_one(argv[optind], task);
		goto out;
	}
	if (gather_dir) {
		if (optind != argc) {
			usage(stderr);
			goto out;
		}
		struct plan g;
		if (plan_load(gather_dir, &g, NULL) < 0) {
			rc = 2;
			goto out;
		}
		rc = gather(gather_dir, &g);
		plan_free(&g);
		goto out;
	}
	if (!config || !dir || optind != argc) {
		if (!config || !dir)
			fprintf(stderr, "mead-experiment: sweep needs -c CONFIG and -d DIR\n");
		usage(stderr);
		goto out;
	}
	for (int k = 0; k < p.n_params; k++) {
		if (!strcmp(p.params[k].key, "driver.seed") || !strcmp(p.params[k].key, "protocol.seed")) {
			fprintf(stderr, "mead-experiment: -p %s: the seeds are --seeds and --first-seed\n", p.params[k].key);
			goto out;
		}
		for (int i = 0; i < p.n_set; i++) {
			size_t kl = strlen(p.params[k].key);
			if (!strncmp(p.set[i], p.params[k].key, kl) && p.set[i][kl] == '=') {
				fprintf(stderr, "mead-experiment: %s is both swept (-p) and set (-o %s)\n", p.params[k].key,
					p.set[i]);
				goto out;
			}
		}
	}
	char abs_config[PATH_MAX];
	if (!realpath(config, abs_config)) {
		fprintf(stderr, "mead-experiment: -c %s: %s\n", config, strerror(errno));
		rc = 2;
		goto out;
	}
	p.config = xstrdup(abs_config);
	p.points = 1;
	for (int k = 0; k < p.n_params; k++)
		p.points *= p.params[k].n;
	p.tasks = p.points * p.seeds;
	if (p.tasks > 10000000) {
		fprintf(stderr, "mead-experiment: %ld tasks: more than a sweep holds (10,000,000)\n", p.tasks);
		goto out;
	}
	/* every value the daemon refuses is reported before anything runs */
	bool base_refused = check_config(&p, NULL, NULL) < 0, refused = base_refused;
	for (int k = 0; k < p.n_params && !base_refused; k++)
		for (int v = 0; v < p.params[k].n; v++)
			if (check_config(&p, p.params[k].key, p.params[k].values[v]) < 0) {
				refused = true;
				if (v == 0)
					break;   /* the key itself, most likely: once is enough */
			}
	if (refused) {
		rc = 2;
		goto out;
	}

	char *text = plan_text(&p), *old = NULL, *path;
	if (mkdirs(dir) < 0) {
		free(text);
		goto out;
	}
	/* absolute: the Slurm script and the tasks run elsewhere */
	static char abs_dir[PATH_MAX];
	if (!realpath(dir, abs_dir)) {
		fprintf(stderr, "mead-experiment: -d %s: %s\n", dir, strerror(errno));
		free(text);
		goto out;
	}
	dir = abs_dir;
	path = xasprintf("%s/plan.json", dir);
	old = read_file(path, NULL);
	if (old && strcmp(old, text) != 0) {
		const char *a = old, *b = text;
		while (*a && *a == *b) {
			a++;
			b++;
		}
		while (a > old && a[-1] != '\n')
			a--;
		while (b > text && b[-1] != '\n')
			b--;
		fprintf(stderr, "mead-experiment: %s holds another sweep: its plan has\n  %.*s\nwhere this command "
			"gives\n  %.*s\n(a new -d DIR for a new sweep; the same command as before resumes that one)\n",
			dir, (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
		free(old);
		free(text);
		free(path);
		rc = 2;
		goto out;
	}
	if (!old && write_atomic(path, text, strlen(text)) < 0) {
		fprintf(stderr, "mead-experiment: cannot write %s: %s\n", path, strerror(errno));
		free(text);
		free(path);
		goto out;
	}
	free(old);
	free(text);
	free(path);

	/* one sweep command per directory at a time (Slurm's --task runs are
	 * the array's own and take no lock) */
	char *lock = xasprintf("%s/lock", dir);
	int lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "mead-experiment: %s: %s\n", lock,
			lock_fd < 0 ? strerror(errno) : "another sweep command is running in this directory");
		free(lock);
		if (lock_fd >= 0)
			close(lock_fd);
		goto out;
	}
	free(lock);
	long n_todo;
	long *todo = todo_list(dir, &p, &n_todo);
	if (n_todo == 0) {
		fprintf(stderr, "sweep: every task of %s has its row\n", dir);
		rc = gather(dir, &p);
	} else if (slurm) {
		rc = run_slurm(dir, &p, todo, n_todo, sbatch_args, n_sbatch, max_running, wait);
	} else {
		rc = run_local(dir, &p, todo, n_todo, jobs) < 0 ? 130 : gather(dir, &p);
	}
	free(todo);
	close(lock_fd);
out:
	plan_free(&p);
	return rc;
}
