/* groupbytrace processor: the Collector's groupbytrace. Holds each trace for wait_duration
 * after its first span, then releases all of its spans together, so the processors after it
 * see whole traces.
 *
 * Config:
 *   wait_duration: 1s        how long a trace is held after its first span arrives
 *   num_traces: 1000000      traces held at most; past it the oldest is released early
 *   num_workers, discard_orphans: accepted (the Collector's keys)
 *   store_on_disk: false     held spans are kept on disk by the host's hold journal when an
 *                            exporter of the pipeline has a persistent queue
 *
 * The code is the tail_sampling processor's (plugins/tail_sampling) without policies: its
 * counter traces_sampled counts released traces.
 */
#define GROUP_BY_TRACE 1
#include "../tail_sampling/tail_sampling.c"
