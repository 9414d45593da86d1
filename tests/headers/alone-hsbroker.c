/* hsbroker.h compiles alone, first, with no other include. */
#include "hsbroker/hsbroker.h"
