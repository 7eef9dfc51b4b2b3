/* SPDX-License-Identifier: MIT */
#include "readout/score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "mead/wire.h"
#include "readout/fit.h"

static bool pixel_features(struct mead_readout *s, const struct mead_trial *t, bool test, float *x)
{
	struct mead_pixels *im = (test && s->test_img) ? s->test_img : s->img;
	return im && mead_pixels_features(im, t->item, x);
}

static void culture_features(const struct mead_readout *s, const struct mead_trial *t, float *x)
{
	for (uint32_t i = 0; i < s->n_feat; i++)
		x[i] = (float)t->counts[s->feat_idx[i]];
}

static struct mead_readout_block *get_block(struct mead_readout_block **v, uint32_t *n, uint32_t *cap,
					     uint32_t id)
{
	if (*n > 0 && (*v)[*n - 1].id == id)
		return &(*v)[*n - 1];
	if (*n == *cap) {
		uint32_t c = *cap ? *cap * 2 : 16;
		struct mead_readout_block *b = realloc(*v, c * sizeof(*b));
		if (!b)
			return NULL;
		*v = b;
		*cap = c;
	}
	struct mead_readout_block *b = &(*v)[(*n)++];
	memset(b, 0, sizeof(*b));
	b->id = id;
	return b;
}

/* Label event value -> class index, or -1. */
static int32_t class_of(struct mead_readout *s, int32_t value)
{
	if (value < 0)
		return -1;
	if (s->o.n_class_values == 0)
		return (uint32_t)value < s->o.classes ? value : -1;
	for (uint32_t i = 0; i < s->o.n_class_values; i++)
		if (s->o.class_values[i] == value)
			return (int32_t)i;
	return -1;
}

/* A block's pixel figures: the test file's when tf (the run's last block,
 * --test-images given), else the training file's. */
static void block_pixels(const struct mead_readout_block *b, bool tf, uint32_t *ok, uint32_t *n)
{
	*ok = tf ? b->pixel_ok_tf : b->pixel_ok;
	*n = tf ? b->pixel_n_tf : b->pixel_n;
}

/* last_tf: the last block's pixel figures come from the test file
 * (--test-images given). */
static void sum_blocks(const struct mead_readout_block *v, uint32_t n, bool all, bool last_tf,
		       struct mead_readout_block *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < n; i++) {
		if (!all && i + 1 != n)
			continue;
		const struct mead_readout_block *b = &v[i];
		out->id = b->id;
		out->n += b->n;
		out->culture_ok += b->culture_ok;
		out->culture_n += b->culture_n;
		out->ties += b->ties;
		out->readout_ok += b->readout_ok;
		out->readout_n += b->readout_n;
		uint32_t pok, pn;
		block_pixels(b, last_tf && i + 1 == n, &pok, &pn);
		out->pixel_ok += pok;
		out->pixel_n += pn;
	}
}

static int jnum(char *buf, size_t len, uint32_t ok, uint32_t n)
{
	return n ? snprintf(buf, len, "%.6f", (double)ok / n) : snprintf(buf, len, "null");
}

static const char *phase_name(int32_t p)
{
	switch (p) {
	case MEAD_PHASE_TRAIN: return "train";
	case MEAD_PHASE_TEST: return "test";
	case MEAD_PHASE_REST: return "rest";
	case MEAD_TRIAL_PHASE_VALIDATION: return "validation";
	}
	return "unknown";
}

static void publish(struct mead_readout *s, const char *js, size_t len)
{
	if (!s->pub)
		return;
	if (zmq_send(s->pub, "readout", 7, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		return;
	zmq_send(s->pub, js, len, ZMQ_DONTWAIT);
}

/* What one trial was predicted to be: a class, or -1 for none. */
struct prediction {
	int culture, readout, pixel, pixel_tf;
	bool tie;                 /* culture: classes scored equal */
	bool labelled;            /* a training trial whose label the readouts learn */
};

static void train_trial(struct mead_readout *s, const struct mead_trial *t, int32_t cls, struct prediction *p)
{
	float x[MEAD_TRIALS_MAX_ELECTRODES];
	p->labelled = mead_readout_keeps_label(s->train_seen, s->o.label_fraction);
	s->train_seen++;
	s->train_used++;
	if (p->labelled)
		s->labelled++;
	culture_features(s, t, x);
	bool px = s->pixel && pixel_features(s, t, false, s->xbuf);
	if (s->pixel && !px)
		s->pixel_missing++;
	s->train_since_block = true;
	if (mead_readout_store_add(&s->train, x, px ? s->xbuf : NULL, p->labelled ? cls : -1, t->block) < 0)
		mead_readout_log("out of memory storing a training trial");
}

static void count(struct mead_readout_block *b, const struct prediction *p, int32_t cls)
{
	b->n++;
	if (p->culture >= 0) {
		b->culture_n++;
		b->culture_ok += p->culture == cls;
		b->ties += p->tie;
	}
	if (p->readout >= 0) {
		b->readout_n++;
		b->readout_ok += p->readout == cls;
	}
	if (p->pixel >= 0) {
		b->pixel_n++;
		b->pixel_ok += p->pixel == cls;
	}
	if (p->pixel_tf >= 0) {
		b->pixel_n_tf++;
		b->pixel_ok_tf += p->pixel_tf == cls;
	}
}

/* A test-phase or validation trial.  Validation passes come between
 * training blocks: the readout is fitted for the test phase only, and
 * scores validation trials when it already has a current fit. */
static void test_trial(struct mead_readout *s, const struct mead_trial *t, int32_t cls, struct prediction *p)
{
	float x[MEAD_TRIALS_MAX_ELECTRODES];
	bool test = t->phase == MEAD_PHASE_TEST;
	if (test) {
		s->test_seen++;
		/* A new block: fit on what came before it, never on it. */
		if ((int64_t)t->block != s->cur_block) {
			s->cur_block = t->block;
			s->cur_block_pass = s->train_since_block;
			s->train_since_block = false;
			if (s->o.fit_on != MEAD_FIT_TRAIN || !s->fitted || s->fit_train != s->train.n)
				mead_readout_fit(s, t->block);
		}
	}
	if (s->rule.n_classes >= 2)
		p->culture = mead_rule_predict(&s->rule, t->counts, s->n_neurons ? s->neurons : NULL, s->n_neurons,
					       NULL, &p->tie);
	culture_features(s, t, x);
	if (test || s->fitted)
		p->readout = mead_model_predict(s->culture, x, NULL);
	/* Training-file pixels: what a validation or readout pass shows,
	 * and what a later fit may learn from. */
	bool px = s->pixel && pixel_features(s, t, false, s->xbuf);
	if (px && (test || s->fitted))
		p->pixel = mead_model_predict(s->pixel, s->xbuf, NULL);
	if (test && s->pixel && s->test_img && pixel_features(s, t, true, s->xbuf_tf))
		p->pixel_tf = mead_model_predict(s->pixel, s->xbuf_tf, NULL);
	if (test && cls >= 0 && mead_readout_store_add(&s->off, x, px ? s->xbuf : NULL, cls, t->block) < 0)
		mead_readout_log("out of memory storing a test-phase trial");
	if (cls < 0) {
		s->unlabelled++;
		return;
	}
	struct mead_readout_block *b = test ? get_block(&s->blocks, &s->n_blocks, &s->cap_blocks, t->block)
					    : get_block(&s->vblocks, &s->n_vblocks, &s->cap_vblocks, t->block);
	if (!b)
		return;
	if (b->n == 0)
		b->pass = test && s->cur_block_pass;
	count(b, p, cls);
}

/* The trial's JSON object on --publish, with the running figures: the test
 * phase so far (as the summary counts it), or the current validation pass. */
static void publish_trial(struct mead_readout *s, const struct mead_trial *t, const struct prediction *p)
{
	struct mead_readout_block cur;
	memset(&cur, 0, sizeof(cur));
	if (t->phase == MEAD_PHASE_TEST)
		sum_blocks(s->blocks, s->n_blocks, !s->o.score_last, s->test_img != NULL, &cur);
	else if (t->phase == MEAD_TRIAL_PHASE_VALIDATION && s->n_vblocks > 0 &&
		 s->vblocks[s->n_vblocks - 1].id == t->block)
		cur = s->vblocks[s->n_vblocks - 1];
	char a[32], b[32], c[32];
	jnum(a, sizeof(a), cur.culture_ok, cur.culture_n);
	jnum(b, sizeof(b), cur.readout_ok, cur.readout_n);
	jnum(c, sizeof(c), cur.pixel_ok, cur.pixel_n);
	/* a test trial may be the held-out test's: its item is in the test file */
	int pixel = p->pixel_tf >= 0 ? p->pixel_tf : p->pixel;
	char cul[16], rd[16], px[16];
	snprintf(cul, sizeof(cul), p->culture >= 0 ? "%d" : "null", p->culture);
	snprintf(rd, sizeof(rd), p->readout >= 0 ? "%d" : "null", p->readout);
	snprintf(px, sizeof(px), pixel >= 0 ? "%d" : "null", pixel);
	int n = snprintf(s->json, sizeof(s->json),
			 "{\"trial\":%lld,\"phase\":\"%s\",\"block\":%u,\"start_sample\":%llu,"
			 "\"end_sample\":%llu,\"label\":%d,\"item\":%lld,\"spikes\":%u,\"lossy\":%s,"
			 "\"labelled\":%s,\"culture\":%s,\"culture_tie\":%s,\"readout\":%s,\"pixel\":%s,"
			 "\"n\":%u,\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s}",
			 (long long)t->index, phase_name(t->phase), t->block,
			 (unsigned long long)t->start_sample, (unsigned long long)t->end_sample, t->label,
			 (long long)t->item, t->total_spikes, t->lossy ? "true" : "false",
			 p->labelled ? "true" : "false", cul, p->tie ? "true" : "false", rd, px, cur.n, a, b, c);
	if (n > 0 && (size_t)n < sizeof(s->json))
		publish(s, s->json, (size_t)n);
}

void mead_readout_score_trial(struct mead_readout *s, const struct mead_trial *t)
{
	struct prediction p = {.culture = -1, .readout = -1, .pixel = -1, .pixel_tf = -1};
	int32_t cls = class_of(s, t->label);
	if (t->lossy)
		s->lossy++;
	if (t->label >= 0 && cls < 0 && !s->warned_label) {
		mead_readout_log("label %d is not one of the %u classes (--classes, --class-values)", t->label,
				 s->o.classes);
		s->warned_label = true;
	}
	if (t->phase == MEAD_PHASE_TRAIN) {
		if (cls < 0)
			s->unlabelled++;
		else
			train_trial(s, t, cls, &p);
	} else if (t->phase == MEAD_PHASE_TEST || t->phase == MEAD_TRIAL_PHASE_VALIDATION) {
		test_trial(s, t, cls, &p);
	} else {
		s->other_phase++;
	}
	if (s->pub)
		publish_trial(s, t, &p);
}

static void fmt_acc(char *buf, size_t len, uint32_t ok, uint32_t n)
{
	if (n)
		snprintf(buf, len, "%.4f", (double)ok / n);
	else
		snprintf(buf, len, "nan");
}

void mead_readout_print_summary(struct mead_readout *s, double elapsed)
{
	struct mead_readout_block tot;
	sum_blocks(s->blocks, s->n_blocks, !s->o.score_last, s->test_img != NULL, &tot);
	struct mead_trials_stats st;
	mead_trials_get_stats(s->trials, &st);
	if (!s->o.json) {
		char a[16], b[16], c[16];
		fmt_acc(a, sizeof(a), tot.culture_ok, tot.culture_n);
		fmt_acc(b, sizeof(b), tot.readout_ok, tot.readout_n);
		fmt_acc(c, sizeof(c), tot.pixel_ok, tot.pixel_n);
		printf("accuracy=%s readout_accuracy=%s pixel_baseline=%s n=%u\n", a, b, c, tot.n);
		fflush(stdout);
		return;
	}
	char a[32], b[32], c[32];
	jnum(a, sizeof(a), tot.culture_ok, tot.culture_n);
	jnum(b, sizeof(b), tot.readout_ok, tot.readout_n);
	jnum(c, sizeof(c), tot.pixel_ok, tot.pixel_n);
	printf("{\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s,\"n\":%u,"
	       "\"culture_correct\":%u,\"culture_ties\":%u,\"readout_correct\":%u,\"pixel_correct\":%u,"
	       "\"pixel_n\":%u,\"score\":\"%s\",\"test_trials\":%llu,\"train_trials\":%llu,"
	       "\"labelled_trials\":%llu,\"unlabelled_trials\":%llu,\"other_phase_trials\":%llu,"
	       "\"lossy_trials\":%llu,\"pixel_missing\":%llu,",
	       a, b, c, tot.n, tot.culture_ok, tot.ties, tot.readout_ok, tot.pixel_ok, tot.pixel_n,
	       s->o.score_last ? "last" : "all", (unsigned long long)s->test_seen,
	       (unsigned long long)s->train_used, (unsigned long long)s->labelled,
	       (unsigned long long)s->unlabelled, (unsigned long long)s->other_phase,
	       (unsigned long long)s->lossy, (unsigned long long)s->pixel_missing);
	printf("\"test_blocks\":[");
	for (uint32_t i = 0; i < s->n_blocks; i++) {
		const struct mead_readout_block *bl = &s->blocks[i];
		uint32_t pok, pn;
		block_pixels(bl, s->test_img && i + 1 == s->n_blocks, &pok, &pn);
		jnum(a, sizeof(a), bl->culture_ok, bl->culture_n);
		jnum(b, sizeof(b), bl->readout_ok, bl->readout_n);
		jnum(c, sizeof(c), pok, pn);
		printf("%s{\"block\":%u,\"n\":%u,\"after_training\":%s,\"accuracy\":%s,\"readout_accuracy\":%s,"
		       "\"pixel_baseline\":%s}",
		       i ? "," : "", bl->id, bl->n, bl->pass ? "true" : "false", a, b, c);
	}
	printf("],\"validation\":[");
	for (uint32_t i = 0; i < s->n_vblocks; i++) {
		const struct mead_readout_block *bl = &s->vblocks[i];
		jnum(a, sizeof(a), bl->culture_ok, bl->culture_n);
		jnum(b, sizeof(b), bl->readout_ok, bl->readout_n);
		jnum(c, sizeof(c), bl->pixel_ok, bl->pixel_n);
		printf("%s{\"block\":%u,\"n\":%u,\"accuracy\":%s,\"readout_accuracy\":%s,\"pixel_baseline\":%s}",
		       i ? "," : "", bl->id, bl->n, a, b, c);
	}
	char fit_blocks[16];
	if (s->o.fit_sel == MEAD_SEL_LAST)
		snprintf(fit_blocks, sizeof(fit_blocks), "%u", s->o.fit_last);
	else
		snprintf(fit_blocks, sizeof(fit_blocks), "%s", s->o.fit_sel == MEAD_SEL_ALL ? "all" : "best");
	printf("],\"trials_finished\":%llu,\"trials_dropped\":%llu,\"trials_forced\":%llu,"
	       "\"messages\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"seq_gaps\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"lost_messages\":{\"spikes\":%llu,\"events\":%llu,\"status\":%llu},"
	       "\"bad_messages\":%llu,\"spikes_out_of_range\":%llu,\"spikes_evicted\":%llu,"
	       "\"run_ended\":%s,\"fit_on\":\"%s\",\"fit_blocks\":\"%s\",\"fit_train_trials\":%u,"
	       "\"fit_label_off_trials\":%u,\"fit_labelled_trials\":%u,\"fit_label_off_blocks\":%u,\"layer\":\"%s\",\"units\":%u,\"classifier\":\"%s\",\"classes\":%u,"
	       "\"label_fraction\":%g,\"seed\":%llu,\"elapsed_s\":%.3f}\n",
	       (unsigned long long)st.trials_finished, (unsigned long long)st.trials_dropped,
	       (unsigned long long)st.trials_forced, (unsigned long long)st.messages[MEAD_KIND_SPIKES],
	       (unsigned long long)st.messages[MEAD_KIND_EVENTS],
	       (unsigned long long)st.messages[MEAD_KIND_STATUS],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_SPIKES],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_EVENTS],
	       (unsigned long long)st.seq_gaps[MEAD_KIND_STATUS],
	       (unsigned long long)st.lost[MEAD_KIND_SPIKES], (unsigned long long)st.lost[MEAD_KIND_EVENTS],
	       (unsigned long long)st.lost[MEAD_KIND_STATUS],
	       (unsigned long long)(st.bad_messages + (s->src ? s->src->bad : 0)),
	       (unsigned long long)st.spikes_out_of_range, (unsigned long long)st.spikes_evicted,
	       st.run_ended ? "true" : "false",
	       s->o.fit_on == MEAD_FIT_TRAIN ? "train" : s->o.fit_on == MEAD_FIT_BOTH ? "both" : "unlabelled", fit_blocks,
	       s->fit_train, s->fit_off, s->fit_labelled, s->fit_blocks, mead_layer_kind_name(s->o.model.layer),
	       s->o.model.layer == MEAD_LAYER_NONE ? 0 : s->o.model.units, mead_clf_kind_name(s->o.model.clf),
	       s->o.classes, s->o.label_fraction, (unsigned long long)s->o.model.seed, elapsed);
	fflush(stdout);
}
