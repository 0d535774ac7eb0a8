#ifndef URINGSYNC_ENGINE_H
#define URINGSYNC_ENGINE_H
#include <stddef.h>
#include <stdint.h>
#include "api.h"
#include <signal.h>

/* set by the SIGINT/SIGTERM handler of us_catch_stop (stop.c) */
extern volatile sig_atomic_t us_stop_flag;
#endif
