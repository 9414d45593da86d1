/* The error table behind hs_strerror. */
#include "hsbroker/error.h"

#include "wire.h"

const char *hs__strerror(int code)
{
	if (code == 0)
		return "success";
	switch (code) {
#define HS__ERR_TEXT(name, val, text) \
	case (val):                   \
		return text;
		HS_ERRNO_MAP(HS__ERR_TEXT)
#undef HS__ERR_TEXT
	}
	return "unknown error";
}

const char *hs__err_name(int code)
{
	if (code == 0)
		return "HS_OK";
	switch (code) {
#define HS__ERR_NAME(name, val, text) \
	case (val):                   \
		return "HS_" #name;
		HS_ERRNO_MAP(HS__ERR_NAME)
#undef HS__ERR_NAME
	}
	return "HS_EUNKNOWN";
}
