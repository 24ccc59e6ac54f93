/*
 * libFuzzer target: one account file through the INI reader and every
 * key's parser and cross-check. Relative *_file paths point into a folder
 * that does not exist, so no input can make it read real secrets.
 */
#include <stdint.h>
#include <string.h>

#include "tokend.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct account_conf	*ac;
	struct diag		 d;
	size_t			 i;

	memset(&d, 0, sizeof d);
	ac = config_account_parse("/nonexistent-tokend-fuzz/fuzz.conf", "fuzz",
	    (const char *)data, size, &d);
	if (ac != NULL) {
		/*
		 * A loaded account is complete and self-consistent: it has
		 * its token endpoint, or an issuer whose discovery gives it.
		 */
		if (ac->grant != GRANT_STATIC && ac->issuer == NULL &&
		    (ac->token_url == NULL || ac->refresh_url == NULL))
			__builtin_trap();
		if (!config_account_equal(ac, ac))
			__builtin_trap();
		config_account_free(ac);
	}
	for (i = 0; i < d.nerrors; i++)
		if (strncmp(d.errors[i], "/nonexistent-tokend-fuzz/fuzz.conf",
		    34) != 0)
			__builtin_trap();	/* every error names its file */
	diag_clear(&d);
	return 0;
}
