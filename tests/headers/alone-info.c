/* info.h compiles alone, first, with no other include. */
#include "hsbroker/info.h"
