/* client.h compiles alone, first, with no other include. */
#include "hsbroker/client.h"
