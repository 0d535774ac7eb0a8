/* XXH3 for the engine: on x86, through libxxhash's run-time CPU dispatch
 * (xxh_x86dispatch.h: AVX2 or AVX-512 where the CPU has them).  Debian
 * builds the plain entry points for SSE2 only; with them a digest took about
 * 1.6 times the CPU per byte that xxh128sum (which dispatches) takes.
 * Elsewhere, or without the dispatch header, the plain functions. */
#ifndef URINGSYNC_XXH_H
#define URINGSYNC_XXH_H

#include <xxhash.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif
#endif

#endif
