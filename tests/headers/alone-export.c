/* export.h compiles alone, first, with no other include. */
#include "hsbroker/export.h"
