/*
 * LD_PRELOAD shim for regression tests: while the file named by
 * $TOKEND_TEST_FAIL_ADD exists, curl_multi_add_handle() fails with
 * CURLM_OUT_OF_MEMORY, as it does when libcurl runs out of memory. Every
 * other call, and this one while the file is absent, is libcurl's own.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <curl/curl.h>

CURLMcode
curl_multi_add_handle(CURLM *multi, CURL *easy)
{
	static CURLMcode	(*real)(CURLM *, CURL *);
	const char		*flag = getenv("TOKEND_TEST_FAIL_ADD");

	if (flag != NULL && access(flag, F_OK) == 0)
		return CURLM_OUT_OF_MEMORY;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "curl_multi_add_handle");
	return real != NULL ? real(multi, easy) : CURLM_INTERNAL_ERROR;
}
