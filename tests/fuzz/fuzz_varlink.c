/* libFuzzer target: the varlink message parser (vl_msg_parse) and the
 * method-name check, on arbitrary bytes. Every input must either parse into
 * a valid call or be refused with -EBADMSG and a reason; never crash, leak
 * or read out of bounds. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/varlink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vl_msg m;
	char err[200];
	int r = vl_msg_parse((const char *)data, size, &m, err, sizeof(err));
	if (r == 0) {
		if (!m.method || !vl_method_name_valid(m.method) || !json_is_object(m.params))
			abort();
		vl_msg_clear(&m);
	} else if (r != -EBADMSG || err[0] == '\0') {
		abort();
	}
	/* the name checker on raw text */
	char name[300];
	size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
	memcpy(name, data, n);
	name[n] = '\0';
	(void)vl_method_name_valid(name);
	return 0;
}
