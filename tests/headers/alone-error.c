/* error.h compiles alone, first, with no other include. */
#include "hsbroker/error.h"
