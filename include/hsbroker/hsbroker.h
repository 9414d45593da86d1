/* hsbroker: a shared-memory tensor broker. Include this one header. */
#ifndef HSBROKER_H
#define HSBROKER_H
#include "hsbroker/error.h"
#include "hsbroker/client.h"
#include "hsbroker/info.h"
#include "hsbroker/copy.h"
#endif
