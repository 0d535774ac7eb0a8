#ifndef URINGSYNC_ENGINE_H
#define URINGSYNC_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "api.h"
#endif
