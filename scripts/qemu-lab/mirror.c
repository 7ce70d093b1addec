/*
 * mirror: copy sysfs/procfs subtrees into a plain directory tree, safely.
 *
 *   mirror DEST ROOT...
 *
 * Each ROOT is an absolute path (file or directory); it is copied to DEST/ROOT
 * (leading '/' dropped).  A ROOT written as "@/path" is copied names-only: every
 * regular file becomes an empty placeholder (used for /sys/firmware/acpi/tables).
 *
 * Rules (see docs/real-kernel-fixtures.md):
 *  - regular files are read until EOF with O_NONBLOCK (sysfs reports st_size 4096);
 *  - symlinks are re-created with the same target and never followed;
 *  - resource[0-9]* (incl. _wc) and rom are never read: empty placeholder, original mode
 *    (the plain "resource" text table of BAR addresses is read);
 *  - a file named "config" is read for at most its first 64 bytes;
 *  - write-only files and failed reads become empty placeholders;
 *  - every placeholder is listed as "<path>\t<reason>" in DEST/UNREADABLE;
 *  - all copied entries get mtime 0 so archives of the tree are reproducible.
 * Build: gcc -O2 -static -o mirror mirror.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define CONFIG_LIMIT 64
#define FILE_LIMIT (4 << 20)

static char dest[PATH_MAX];
static FILE *unreadable;
static int names_only;
static unsigned long n_files, n_links, n_dirs, n_placeholders, n_bytes;

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) && errno != EEXIST)
		return -1;
	return 0;
}

static int is_resource_name(const char *b)
{
	if (!strcmp(b, "rom"))
		return 1;
	if (strncmp(b, "resource", 8))
		return 0;
	const char *p = b + 8;
	if (*p < '0' || *p > '9')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	return *p == 0 || !strcmp(p, "_wc");
}

/* out = dest + src */
static void dst_path(char *out, const char *src)
{
	snprintf(out, PATH_MAX, "%s%s", dest, src);
}

static void placeholder(const char *src, const char *dst, mode_t mode, const char *reason)
{
	int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0)
		close(fd);
	chmod(dst, mode & 07777);
	fprintf(unreadable, "%s\t%s\n", src + 1, reason);
	n_placeholders++;
}

static void copy_file(const char *src, const char *dst, const struct stat *st)
{
	const char *base = strrchr(src, '/');
	base = base ? base + 1 : src;
	mode_t mode = st->st_mode & 07777;

	if (names_only) {
		placeholder(src, dst, mode, "names-only");
		return;
	}
	if (is_resource_name(base)) {
		placeholder(src, dst, mode, "skipped");
		return;
	}
	if (!(mode & (S_IRUSR | S_IRGRP | S_IROTH))) {
		placeholder(src, dst, mode, "write-only");
		return;
	}
	size_t limit = strcmp(base, "config") ? FILE_LIMIT : CONFIG_LIMIT;
	int in = open(src, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0) {
		char why[64];
		snprintf(why, sizeof why, "open-error:%s", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
		placeholder(src, dst, mode, why);
		return;
	}
	char *buf = malloc(limit);
	size_t got = 0;
	int err = 0;
	while (got < limit) {
		size_t want = limit - got < 65536 ? limit - got : 65536; /* procfs sysctl rejects huge counts */
		ssize_t r = read(in, buf + got, want);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		if (r == 0)
			break;
		got += r;
	}
	close(in);
	if (err) {
		char why[64];
		snprintf(why, sizeof why, "read-error:%s", strerrorname_np(err) ? strerrorname_np(err) : "?");
		free(buf);
		placeholder(src, dst, mode, why);
		return;
	}
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0) {
		perror(dst);
		free(buf);
		return;
	}
	size_t off = 0;
	while (off < got) {
		ssize_t w = write(out, buf + off, got - off);
		if (w <= 0) {
			perror(dst);
			break;
		}
		off += w;
	}
	close(out);
	chmod(dst, mode);
	free(buf);
	n_files++;
	n_bytes += got;
}

static int visit(const char *src, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	char dst[PATH_MAX];
	dst_path(dst, src);
	switch (type) {
	case FTW_D:
		if (mkdir_p(dst, 0755))
			perror(dst);
		n_dirs++;
		break;
	case FTW_DNR:
		mkdir_p(dst, 0755);
		fprintf(unreadable, "%s/\tunreadable-dir\n", src + 1);
		n_placeholders++;
		break;
	case FTW_SL:
	case FTW_SLN: {
		char target[PATH_MAX];
		ssize_t n = readlink(src, target, sizeof target - 1);
		if (n < 0) {
			perror(src);
			break;
		}
		target[n] = 0;
		unlink(dst);
		if (symlink(target, dst))
			perror(dst);
		n_links++;
		break;
	}
	case FTW_F:
		if (S_ISREG(st->st_mode))
			copy_file(src, dst, st);
		/* sockets, fifos, device nodes: not expected under /sys or /proc files we copy */
		break;
	case FTW_NS:
		fprintf(unreadable, "%s\tstat-error\n", src + 1);
		n_placeholders++;
		break;
	}
	return 0;
}

/* Second pass over the destination: mtime 0 everywhere (post-order so directories stick). */
static int zero_time(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st; (void)type; (void)ftw;
	struct timespec ts[2] = { { 0, 0 }, { 0, 0 } };
	utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DEST ROOT|@ROOT...\n", argv[0]);
		return 2;
	}
	snprintf(dest, sizeof dest, "%s", argv[1]);
	size_t dl = strlen(dest);
	while (dl > 1 && dest[dl - 1] == '/')
		dest[--dl] = 0;
	if (mkdir_p(dest, 0755)) {
		perror(dest);
		return 1;
	}
	char upath[PATH_MAX];
	snprintf(upath, sizeof upath, "%s/UNREADABLE", dest);
	unreadable = fopen(upath, "a");
	if (!unreadable) {
		perror(upath);
		return 1;
	}
	int rc = 0;
	for (int i = 2; i < argc; i++) {
		const char *root = argv[i];
		names_only = root[0] == '@';
		if (names_only)
			root++;
		if (root[0] != '/') {
			fprintf(stderr, "mirror: %s: not absolute\n", root);
			rc = 1;
			continue;
		}
		struct stat st;
		if (lstat(root, &st)) {
			fprintf(stderr, "mirror: %s: %s (skipped)\n", root, strerror(errno));
			continue;
		}
		/* parent directories of the root */
		char dst[PATH_MAX], *slash;
		dst_path(dst, root);
		slash = strrchr(dst, '/');
		if (slash && slash != dst) {
			*slash = 0;
			mkdir_p(dst, 0755);
		}
		if (nftw(root, visit, 64, FTW_PHYS)) {
			perror(root);
			rc = 1;
		}
	}
	fclose(unreadable);
	nftw(dest, zero_time, 64, FTW_PHYS | FTW_DEPTH);
	fprintf(stderr, "mirror: %lu dirs, %lu files (%lu bytes), %lu symlinks, %lu placeholders\n",
		n_dirs, n_files, n_bytes, n_links, n_placeholders);
	return rc;
}
