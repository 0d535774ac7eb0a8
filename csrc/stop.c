/* Stopping on SIGINT/SIGTERM, and a worker dying with its parent. */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

volatile int us_stop_flag;
_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "us_stop_flag is a sig_atomic_t");
static int stop_wake_fd = -1;
static struct sigaction old_int, old_term;
static int caught;

static void on_stop_signal(int sig)
{
    int saved = errno;
    (void)sig;
    us_stop_flag = 1;
    if (stop_wake_fd >= 0) {
        ssize_t ignored = write(stop_wake_fd, "s", 1);
        (void)ignored;
    }
    errno = saved;
}

int us_catch_stop(int on, int wake_fd)
{
    if (on) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; /* no SA_RESTART: a blocked wait returns EINTR */
        stop_wake_fd = wake_fd;
        if (sigaction(SIGINT, &sa, caught ? NULL : &old_int) < 0 ||
            sigaction(SIGTERM, &sa, caught ? NULL : &old_term) < 0)
            return -errno;
        caught = 1;
        return 0;
    }
    if (caught) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        caught = 0;
    }
    stop_wake_fd = -1;
    return 0;
}

int us_stop_requested(void)
{
    return us_stop_flag != 0;
}

void us_clear_stop(void)
{
    us_stop_flag = 0;
}

int us_die_with_parent(void)
{
    return prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ? -errno : 0;
}
