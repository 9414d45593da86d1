/* copy.h compiles alone, first, with no other include. */
#include "hsbroker/copy.h"
