/* SPDX-License-Identifier: MIT */
/*
 * Recording source: the daemon's own reader (lib/core/recording.c,
 * compiled into mead-readout as into the replay driver), so the file format
 * has one implementation.  A damaged record is skipped and counted in bad;
 * a torn tail ends the input.
 */
#include "readout/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/core/recording.h"

struct rec_source {
	struct mead_source base;
	struct mead_rec_reader *reader;
};

static int rec_next(struct mead_source *s, struct mead_source_msg *msg, int timeout_ms)
{
	struct rec_source *r = (struct rec_source *)s;
	struct mead_rec_record rec;

	(void)timeout_ms;
	for (;;) {
		int rc = mead_rec_next(r->reader, &rec);
		if (rc == -EBADMSG) {
			s->bad++;
			continue;
		}
		if (rc < 0)
			return rc;
		if (rc == 0)
			return -ENODATA;
		msg->topic = rec.topic;
		msg->topic_len = strlen(rec.topic);
		msg->hdr = rec.header;
		msg->payload = rec.payload;
		msg->payload_len = rec.payload_len;
		return 1;
	}
}

static void rec_free(struct mead_source *s)
{
	struct rec_source *r = (struct rec_source *)s;

	mead_rec_close(r->reader);
	free(r);
}

int mead_source_recording_new(const char *path, struct mead_source **ret, char *err, size_t err_len)
{
	struct rec_source *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	rc = mead_rec_open(path, &r->reader, err, err_len);
	if (rc < 0) {
		free(r);
		return rc;
	}
	const struct mead_rec_info *info = mead_rec_info(r->reader);
	r->base.next = rec_next;
	r->base.free = rec_free;
	r->base.meta = info->meta;
	r->base.meta_len = info->meta_len;
	*ret = &r->base;
	return 0;
}
