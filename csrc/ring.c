/* A ring: its config, the slots of the files in flight, the buffer pool,
 * and the backend that runs their ops (backend_uring.c, or backend_threads.c
 * when asked for or when io_uring cannot be set up).  The walker
 * creates one per process and reads back what it got (us_ring_get_info).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "xxh.h"

void us_ring_free(struct us_ring *r)
{
    if (!r)
        return;
    if (r->be_state)
        r->be->fini(r);
    if (r->bufmem)
        munmap(r->bufmem, r->bufmem_len);
    free(r->freebufs);
    free(r->slots);
    free(r->freeslots);
    free(r->retry);
    free(r->sx);
    free(r->freesx);
    if (r->hstates)
        for (unsigned i = 0; i < r->nslots; i++)
            XXH3_freeState(r->hstates[i]);
    free(r->hstates);
    free(r->metabuf);
    free(r->done);
    free(r);
}

struct us_ring *us_ring_new(const struct us_config *cfg, int *err)
{
    struct us_ring *r = calloc(1, sizeof *r);
    unsigned entries;
    int ret;

    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    r->cfg = *cfg;
    if (r->cfg.queue_depth == 0)
        r->cfg.queue_depth = 64;
    if (r->cfg.queue_depth > 1024)
        r->cfg.queue_depth = 1024;
    if (r->cfg.buf_size < MIN_BUF)
        r->cfg.buf_size = MIN_BUF;
    r->cfg.buf_size = (r->cfg.buf_size + 4095u) & ~4095u;
    if (r->cfg.chunks_per_file == 0)
        r->cfg.chunks_per_file = 4;
    if (r->cfg.chunks_per_file > MAX_CHUNKS)
        r->cfg.chunks_per_file = MAX_CHUNKS;
    /* Every file in flight holds one buffer; the rest serve extra chunks. */
    if (r->cfg.nbufs < r->cfg.queue_depth)
        r->cfg.nbufs = r->cfg.queue_depth;

    r->nslots = r->cfg.queue_depth;
    r->max_inflight = r->cap_inflight = r->nslots;
    entries = r->nslots * (r->cfg.chunks_per_file + 2);
    if (entries > 4096)
        entries = 4096;

    r->bufmem_len = (size_t)r->cfg.nbufs * r->cfg.buf_size;
    r->bufmem =
        mmap(NULL, r->bufmem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r->bufmem == MAP_FAILED) {
        r->bufmem = NULL;
        ret = -errno;
        goto fail;
    }
    /* a slot has at most two opens, its chunks and a close in flight, and
     * fire-and-forget closes are one per slot between two waits */
    r->done_cap = 1;
    while (r->done_cap < r->nslots * (MAX_CHUNKS + 4))
        r->done_cap *= 2;
    r->freebufs = calloc(r->cfg.nbufs, sizeof *r->freebufs);
    r->slots = calloc(r->nslots, sizeof *r->slots);
    r->freeslots = calloc(r->nslots, sizeof *r->freeslots);
    r->retry = calloc(r->nslots, sizeof *r->retry);
    r->sx = calloc(r->nslots, sizeof *r->sx);
    r->freesx = calloc(r->nslots, sizeof *r->freesx);
    r->done = calloc(r->done_cap, sizeof *r->done);
    r->hstates = calloc(r->nslots, sizeof *r->hstates);
    if (!r->freebufs || !r->slots || !r->freeslots || !r->retry || !r->sx || !r->freesx ||
        !r->done || !r->hstates) {
        ret = -ENOMEM;
        goto fail;
    }
    /* the shared libxxhash: its state is opaque, so one allocation each */
    for (unsigned i = 0; i < r->nslots; i++)
        if (!(r->hstates[i] = XXH3_createState())) {
            ret = -ENOMEM;
            goto fail;
        }
    for (unsigned i = 0; i < r->cfg.nbufs; i++)
        r->freebufs[i] = (int)(r->cfg.nbufs - 1 - i);
    r->nfree = r->cfg.nbufs;
    for (unsigned i = 0; i < r->nslots; i++)
        r->freeslots[i] = r->nslots - 1 - i;
    r->nfreeslots = r->nslots;

    if (r->cfg.engine != US_ENGINE_THREADS) {
        r->be = &us_backend_uring;
        ret = r->be->init(r, entries);
        if (ret < 0 && r->cfg.engine == US_ENGINE_AUTO) {
            /* no io_uring here: the same steps on threads */
            r->uring_err = ret;
            if (r->be_state)
                r->be->fini(r);
            memset(r->ops, 0, sizeof r->ops);
            r->nops = 0;
            r->fixed = false;
            r->cfg.engine = US_ENGINE_THREADS;
        }
    }
    if (r->cfg.engine == US_ENGINE_THREADS) {
        r->be = &us_backend_threads;
        ret = r->be->init(r, entries);
    }
    if (ret < 0)
        goto fail;
    *err = 0;
    return r;

fail:
    us_ring_free(r);
    *err = ret;
    return NULL;
}

void us_cq_push(struct us_ring *r, uint64_t ud, int res)
{
    struct us_done *d = &r->done[r->done_tail++ & (r->done_cap - 1)];

    d->udata = ud;
    d->res = res;
}

void us_cq_drain(struct us_ring *r, unsigned n, us_complete_fn *fn, void *arg)
{
    while (n--) {
        struct us_done d = r->done[r->done_head++ & (r->done_cap - 1)];
        fn(r, d.udata, d.res, arg);
    }
}

void us_ring_get_info(struct us_ring *r, struct us_ring_info *info)
{
    info->sq_entries = r->sq_entries;
    info->fixed_buffers = r->fixed;
    info->nops = r->nops;
    info->max_inflight = r->max_inflight;
    info->engine = r->be == &us_backend_threads ? US_ENGINE_THREADS : US_ENGINE_URING;
    info->uring_err = r->uring_err;
}

int us_ring_has_op(struct us_ring *r, int op)
{
    return op >= 0 && op < 256 && r->ops[op];
}

void us_ring_forget_op(struct us_ring *r, int op)
{
    if (op >= 0 && op < 256 && r->ops[op]) {
        r->ops[op] = 0;
        r->nops--;
    }
}

void us_ring_set_scan_follow(struct us_ring *r, int follow)
{
    r->scan_follow = follow != 0;
}

void us_ring_set_copy_range_min(struct us_ring *r, uint64_t n)
{
    r->cfg.copy_range_min = n;
}

void us_ring_set_max_inflight(struct us_ring *r, uint32_t n)
{
    if (n < 1)
        n = 1;
    r->max_inflight = r->cap_inflight = n < r->nslots ? n : r->nslots;
}
