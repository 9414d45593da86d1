// Users of a C library often write C++: every public header compiles as
// C++ (with -Wall -Wextra -Werror through the project's flags) and links.
#include "hsbroker/hsbroker.h"

int main()
{
	hs_client_stats st = {};
	hs_subscribe_opts o = {};
	o.policy = HS_POLICY_DROP_OLDEST;
	const char *s = hs_strerror(HS_ENOSPC);
	return (s && st.slab_opens == 0 && o.depth == 0) ? 0 : 1;
}
