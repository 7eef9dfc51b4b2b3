/* SPDX-License-Identifier: MIT */
/*
 * The configfs gadget around the FunctionFS function: created here when the
 * board has none (and removed again at exit), or taken as the board's own
 * setup left it.  The UDC is bound only after ep0 has its descriptors.
 */
#ifndef MEAD_GADGET_CONFIGFS_H
#define MEAD_GADGET_CONFIGFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_gadget_ids {
	uint16_t vid, pid, bcd_device;
	const char *manufacturer, *product, *serial;
};

struct mg_gadget {
	char dir[256];           /* /sys/kernel/config/usb_gadget/NAME */
	char func[64];           /* the FunctionFS instance: ffs.NAME, mounted as NAME */
	char ffs_dir[256];
	char udc[64];
	bool created, mounted, bound;
};

/* name: a gadget under /sys/kernel/config/usb_gadget, or an absolute path. */
int mg_gadget_prepare(struct mg_gadget *g, const char *name, const char *ffs_name, const char *ffs_dir,
		      const struct mg_gadget_ids *ids, char *err, size_t err_len);
/* The only UDC in /sys/class/udc. */
int mg_default_udc(char *out, size_t len, char *err, size_t err_len);
int mg_gadget_bind(struct mg_gadget *g, const char *udc, char *err, size_t err_len);
void mg_gadget_unbind(struct mg_gadget *g);
/* Undoes what mg_gadget_prepare made; call with ep0 and the endpoints closed. */
void mg_gadget_teardown(struct mg_gadget *g);

#endif
