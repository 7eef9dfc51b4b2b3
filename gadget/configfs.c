/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "gadget/configfs.h"

#define CONFIGFS "/sys/kernel/config"
#define GADGETS CONFIGFS "/usb_gadget"
#define FUNCTIONFS_MAGIC 0xa647361

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[512];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	size_t len = strlen(value);
	ssize_t w = write(fd, value, len);
	int e = w < 0 ? -errno : (size_t)w != len ? -EIO : 0;
	close(fd);
	return e;
}

static int mkdir_in(const char *dir, const char *name)
{
	char path[512];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int mkdir_p(const char *path)
{
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int fail(char *err, size_t err_len, int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < err_len && e)
		snprintf(err + n, err_len - (size_t)n, ": %s", strerror(-e));
	return e ? e : -EINVAL;
}

static int create(struct mg_gadget *g, const struct mg_gadget_ids *ids, char *err, size_t err_len)
{
	char v[64], path[512];
	int e;
	if (mkdir(g->dir, 0755) < 0)
		return fail(err, err_len, -errno, "%s", g->dir);
	g->created = true;
	struct { const char *name; unsigned value; } ids16[] = {
		{ "idVendor", ids->vid }, { "idProduct", ids->pid }, { "bcdDevice", ids->bcd_device }, { "bcdUSB", 0x0200 },
	};
	for (size_t i = 0; i < sizeof(ids16) / sizeof(ids16[0]); i++) {
		snprintf(v, sizeof(v), "0x%04x", ids16[i].value);
		if ((e = write_file(g->dir, ids16[i].name, v)) < 0)
			return fail(err, err_len, e, "%s/%s", g->dir, ids16[i].name);
	}
	snprintf(path, sizeof(path), "%s/strings/0x409", g->dir);
	if ((e = mkdir_in(g->dir, "strings/0x409")) < 0 ||
	    (e = write_file(path, "manufacturer", ids->manufacturer)) < 0 ||
	    (e = write_file(path, "product", ids->product)) < 0 ||
	    (e = write_file(path, "serialnumber", ids->serial)) < 0)
		return fail(err, err_len, e, "%s: device strings", path);
	snprintf(path, sizeof(path), "%s/configs/c.1", g->dir);
	if ((e = mkdir_in(g->dir, "configs/c.1")) < 0 || (e = write_file(path, "MaxPower", "100")) < 0 ||
	    (e = mkdir_in(path, "strings/0x409")) < 0)
		return fail(err, err_len, e, "%s", path);
	snprintf(path, sizeof(path), "%s/configs/c.1/strings/0x409", g->dir);
	if ((e = write_file(path, "configuration", "mead protocol v2")) < 0)
		return fail(err, err_len, e, "%s/configuration", path);
	snprintf(path, sizeof(path), "%s/functions/%s", g->dir, g->func);
	if (mkdir(path, 0755) < 0)
		return fail(err, err_len, -errno, "%s (is usb_f_fs loaded?)", path);
	char link[512];
	snprintf(link, sizeof(link), "%s/configs/c.1/%s", g->dir, g->func);
	if (symlink(path, link) < 0)
		return fail(err, err_len, -errno, "%s", link);
	return 0;
}

int mg_gadget_prepare(struct mg_gadget *g, const char *name, const char *ffs_name, const char *ffs_dir,
		      const struct mg_gadget_ids *ids, char *err, size_t err_len)
{
	memset(g, 0, sizeof(*g));
	if (name[0] == '/')
		snprintf(g->dir, sizeof(g->dir), "%s", name);
	else
		snprintf(g->dir, sizeof(g->dir), GADGETS "/%s", name);
	snprintf(g->func, sizeof(g->func), "ffs.%s", ffs_name);
	snprintf(g->ffs_dir, sizeof(g->ffs_dir), "%s", ffs_dir);

	if (!is_dir(GADGETS)) {
		/* configfs may just not be mounted yet */
		if (is_dir(CONFIGFS))
			mount("none", CONFIGFS, "configfs", 0, NULL);
		if (!is_dir(GADGETS))
			return fail(err, err_len, 0, GADGETS " is missing: mount configfs on " CONFIGFS
				    " and load libcomposite (modprobe libcomposite)");
	}
	int e;
	if (!is_dir(g->dir)) {
		if ((e = create(g, ids, err, err_len)) < 0)
			return e;
	} else {
		char path[512];
		snprintf(path, sizeof(path), "%s/functions/%s", g->dir, g->func);
		if (!is_dir(path))
			return fail(err, err_len, 0, "gadget %s has no function %s (see --ffs-name)", g->dir, g->func);
	}

	struct statfs sf;
	if (statfs(g->ffs_dir, &sf) == 0 && sf.f_type == FUNCTIONFS_MAGIC)
		return 0;
	if ((e = mkdir_p(g->ffs_dir)) < 0)
		return fail(err, err_len, e, "%s", g->ffs_dir);
	if (mount(ffs_name, g->ffs_dir, "functionfs", 0, NULL) < 0)
		return fail(err, err_len, -errno, "mount -t functionfs %s %s", ffs_name, g->ffs_dir);
	g->mounted = true;
	return 0;
}

int mg_default_udc(char *out, size_t len, char *err, size_t err_len)
{
	DIR *d = opendir("/sys/class/udc");
	if (!d)
		return fail(err, err_len, -errno, "/sys/class/udc");
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n++ == 0)
			snprintf(out, len, "%s", de->d_name);
	}
	closedir(d);
	if (n == 0)
		return fail(err, err_len, -ENODEV, "no USB device controller in /sys/class/udc "
			    "(a board needs its dwc2/musb overlay; an emulated guest needs dummy_hcd)");
	if (n > 1)
		return fail(err, err_len, -EINVAL, "%d device controllers in /sys/class/udc: name one with --udc", n);
	return 0;
}

int mg_gadget_bind(struct mg_gadget *g, const char *udc, char *err, size_t err_len)
{
	snprintf(g->udc, sizeof(g->udc), "%s", udc);
	int e = write_file(g->dir, "UDC", udc);
	if (e < 0)
		return fail(err, err_len, e, "binding %s to %s", g->dir, udc);
	g->bound = true;
	return 0;
}

void mg_gadget_unbind(struct mg_gadget *g)
{
	if (g->bound)
		write_file(g->dir, "UDC", "\n");
	g->bound = false;
}

void mg_gadget_teardown(struct mg_gadget *g)
{
	char path[512];
	mg_gadget_unbind(g);
	if (g->mounted)
		umount(g->ffs_dir);
	g->mounted = false;
	if (!g->created)
		return;
	snprintf(path, sizeof(path), "%s/configs/c.1/%s", g->dir, g->func);
	unlink(path);
	snprintf(path, sizeof(path), "%s/configs/c.1/strings/0x409", g->dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/configs/c.1", g->dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/functions/%s", g->dir, g->func);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/strings/0x409", g->dir);
	rmdir(path);
	rmdir(g->dir);
	g->created = false;
}
