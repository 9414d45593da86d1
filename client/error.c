/* hs_strerror and hs_err_name: the table lives in proto/ so the daemon
 * logs the same words. */
#include "hsbroker/error.h"
#include "wire.h"

HS_EXPORT const char *hs_strerror(int code)
{
	return hs__strerror(code);
}

HS_EXPORT const char *hs_err_name(int code)
{
	return hs__err_name(code);
}
