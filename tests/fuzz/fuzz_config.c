/* libFuzzer target: the configuration file reader (conf/config.c: libinih
 * through our own line reader, the key table, every type's parser and the
 * cross-key validation) on arbitrary bytes written to an anonymous memory
 * file. Properties: never crash or leak; a file that loads prints and
 * validates without fault; a refused file says where ("file:line: ...")
 * and leaves no half-built configuration behind (*out stays NULL). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536)
		return 0;
	if (fd < 0) {
		fd = memfd_create("fuzz-config", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();

	struct config *c = (struct config *)1;
	char err[512] = "";
	int r = config_load(path, &c, err, sizeof(err));
	if (r == 0) {
		if (!c)
			abort();
		char verr[512];
		(void)config_validate(c, verr, sizeof(verr));
		FILE *devnull = fopen("/dev/null", "we");
		if (devnull) {
			config_print(c, devnull);
			fclose(devnull);
		}
		/* a second load of the same bytes says the same: no state kept */
		struct config *c2 = NULL;
		char err2[512];
		if (config_load(path, &c2, err2, sizeof(err2)) != 0 || config_diff(c, c2, NULL, NULL) != 0)
			abort();
		config_free(c2);
		config_free(c);
	} else {
		if (c != NULL || err[0] == '\0' || strncmp(err, path, strlen(path)) != 0)
			abort();
	}
	return 0;
}
