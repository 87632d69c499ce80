/* probabilistic_sampler processor: the Collector's probabilisticsampler for traces, with its
 * three modes and OpenTelemetry consistent probability sampling in the W3C tracestate
 * (`ot=th:<threshold>;rv:<randomness>`), so samplers in series, here or in the Collector,
 * agree and the kept spans say how many they stand for.
 *
 * Config:
 *   sampling_percentage: 10    0..100 (fractions allowed; more than 100 is 100)
 *   mode: proportional | equalizing | hash_seed
 *                              default proportional, or hash_seed when hash_seed is set
 *   hash_seed: 0               hash_seed mode: instances that must agree use the same seed
 *   sampling_precision: 4      hex digits of the threshold written (1..14)
 *   fail_closed: true          a span whose tracestate is malformed or inconsistent is dropped
 *   attribute_source, from_attribute, sampling_priority: the Collector's logs-only keys, accepted
 *
 * Every span: R (56-bit randomness) is the tracestate's rv, else the trace id's last 7 bytes;
 * hash_seed mode instead hashes the trace id (FNV-1a over the seed's 4 little-endian bytes and
 * the id, 14 bits kept, as the Collector's). T (56-bit rejection threshold) is 2^56 * (1 - p);
 * the span is kept when R >= T, and its tracestate then carries th:T.
 *   proportional: p = the arriving probability (from th, else 1) * the percentage
 *   equalizing:   p = the percentage; an arriving th that is already stricter is kept
 * A `sampling.priority` attribute of 0 drops the span; above 0 keeps it (th:0).
 * Counters: kept_spans, dropped_spans, tracestate_errors.
 */
#include "plugin_util.h"

#include <math.h>

static const spanhost_host_api *host;

#define MAX_ADJUSTED ((uint64_t)1 << 56) /* thresholds and randomness are 56-bit */
#define NEVER MAX_ADJUSTED               /* the threshold that keeps nothing */
#define HEX_DIGITS 14

enum { PROPORTIONAL, EQUALIZING, HASH_SEED };

typedef struct sampler {
    spanhost_instance *instance;
    int mode, precision, fail_closed;
    uint32_t seed;
    double ratio;        /* 0..1 */
    uint64_t threshold;  /* equalizing and hash_seed: the configured T */
    util_counter kept_spans, dropped_spans;
} sampler;

/* The threshold for probability p, rounded to `precision` hex digits (more near 0 and 1), as
 * the Collector's sampling.ProbabilityToThresholdWithPrecision. NEVER when p is out of range. */
static uint64_t probability_threshold(double p, int precision) {
    if (!(p >= 1.0 / (double)MAX_ADJUSTED) || p > 1) return NEVER;
    if (p == 1) return 0;
    int exp_f, exp_r;
    frexp(p, &exp_f);
    frexp(1 - p, &exp_r);
    int a = precision + exp_f / -4, b = precision + exp_r / -4;
    precision = a > b ? a : b;
    if (precision > HEX_DIGITS) precision = HEX_DIGITS;
    uint64_t scaled = (uint64_t)llround(p * (double)MAX_ADJUSTED);
    uint64_t t = MAX_ADJUSTED - scaled;
    int shift = 4 * (HEX_DIGITS - precision);
    if (shift) {
        t += (uint64_t)1 << (shift - 1);
        t >>= shift;
        t <<= shift;
    }
    return t;
}

static uint32_t fnv_seeded(uint32_t seed, const uint8_t id[16]) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < 4; i++) h = (h ^ ((seed >> (8 * i)) & 0xff)) * 16777619u;
    for (int i = 0; i < 16; i++) h = (h ^ id[i]) * 16777619u;
    return h;
}

/* The Collector's randomness from a 14-bit hash: R's top 14 bits are 0x3fff - hash, so that
 * R >= T exactly when hash < the scaled rate. */
static uint64_t hashed_randomness(uint32_t h32) {
    uint64_t hashed = h32 & 0x3fff;
    uint64_t unused18 = h32 >> 14;
    uint64_t mixed28 = (unused18 ^ (unused18 << 10)) & 0xfffffff;
    return ((0x3fff - hashed) << 42) | (mixed28 << 14) | hashed;
}

static int parse_hex(const char *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* The parts of a tracestate this processor reads and rewrites. */
typedef struct tracestate {
    int has_th, has_rv;
    uint64_t th, rv;
    spanhost_str th_text, rv_text; /* as they arrived (rv keeps its case); empty when set here */
    spanhost_str ot_rest;    /* the ot value's other sub-keys, ';'-joined */
    spanhost_str others[32]; /* the other vendors' entries, in order */
    size_t nothers;
} tracestate;

static spanhost_str trim(const char *p, size_t n) {
    while (n && (*p == ' ' || *p == '\t')) { p++; n--; }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    return (spanhost_str){p, n};
}

/* Reads th and rv from the `ot` entry. Returns -1 when the tracestate cannot be read. */
static int parse_tracestate(spanhost_str raw, tracestate *ts) {
    memset(ts, 0, sizeof *ts);
    const char *p = raw.ptr, *end = raw.ptr + raw.len;
    while (raw.len && p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        spanhost_str entry = trim(p, (size_t)((comma ? comma : end) - p));
        p = comma ? comma + 1 : end;
        if (!entry.len) continue;
        const char *eq = memchr(entry.ptr, '=', entry.len);
        if (!eq || eq == entry.ptr) return -1;
        if (eq - entry.ptr == 2 && !memcmp(entry.ptr, "ot", 2)) {
            const char *q = eq + 1, *vend = entry.ptr + entry.len;
            const char *rest = NULL, *rest_end = NULL;
            while (q < vend) {
                const char *semi = memchr(q, ';', (size_t)(vend - q));
                const char *stop = semi ? semi : vend;
                const char *colon = memchr(q, ':', (size_t)(stop - q));
                if (!colon) return -1;
                size_t klen = (size_t)(colon - q), vlen = (size_t)(stop - colon - 1);
                if (klen == 2 && !memcmp(q, "th", 2)) {
                    if (vlen < 1 || vlen > HEX_DIGITS || parse_hex(colon + 1, vlen, &ts->th)) return -1;
                    ts->th <<= 4 * (HEX_DIGITS - vlen);
                    ts->has_th = 1;
                    ts->th_text = (spanhost_str){colon + 1, vlen};
                } else if (klen == 2 && !memcmp(q, "rv", 2)) {
                    if (vlen != HEX_DIGITS || parse_hex(colon + 1, vlen, &ts->rv)) return -1;
                    ts->has_rv = 1;
                    ts->rv_text = (spanhost_str){colon + 1, vlen};
                } else {
                    if (!rest) rest = q;
                    rest_end = stop;
                }
                q = semi ? semi + 1 : vend;
            }
            if (rest) ts->ot_rest = (spanhost_str){rest, (size_t)(rest_end - rest)};
        } else {
            if (ts->nothers == 32) return -1; /* W3C allows 32 entries */
            ts->others[ts->nothers++] = entry;
        }
    }
    return 0;
}

/* Writes the tracestate into the arena, as the Collector serializes it: the `ot` entry first,
 * in it rv, th, then the other sub-keys; th without trailing zeros. */
static int write_tracestate(spanhost_batch *batch, spanhost_span *span, const tracestate *ts) {
    char buf[1024];
    size_t n = 0;
    if (ts->has_th || ts->has_rv || ts->ot_rest.len) {
        const char *sep = "";
        n += (size_t)snprintf(buf + n, sizeof buf - n, "ot=");
        if (ts->has_rv) {
            if (ts->rv_text.len) n += (size_t)snprintf(buf + n, sizeof buf - n, "rv:%.*s", (int)ts->rv_text.len, ts->rv_text.ptr);
            else n += (size_t)snprintf(buf + n, sizeof buf - n, "rv:%014llx", (unsigned long long)ts->rv);
            sep = ";";
        }
        if (ts->has_th) {
            char hex[HEX_DIGITS + 1];
            snprintf(hex, sizeof hex, "%014llx", (unsigned long long)ts->th);
            int len = HEX_DIGITS;
            while (len > 1 && hex[len - 1] == '0') len--;
            if (ts->th_text.len) n += (size_t)snprintf(buf + n, sizeof buf - n, "%sth:%.*s", sep, (int)ts->th_text.len, ts->th_text.ptr);
            else n += (size_t)snprintf(buf + n, sizeof buf - n, "%sth:%.*s", sep, len, hex);
            sep = ";";
        }
        if (ts->ot_rest.len && n < sizeof buf) n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%.*s", sep, (int)ts->ot_rest.len, ts->ot_rest.ptr);
    }
    for (size_t i = 0; i < ts->nothers && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%.*s", n ? "," : "", (int)ts->others[i].len, ts->others[i].ptr);
    if (n >= sizeof buf) return 0; /* too long to rewrite: left as it came */
    spanhost_str copy = host->arena_strdup(batch, buf, n);
    if (!copy.ptr && n) return -1;
    span->trace_state = copy;
    return 0;
}

/* sampling.priority as the Collector reads it: -1 none, 0 drop, 1 keep. */
static int sampling_priority(const spanhost_span *span) {
    spanhost_str key = {"sampling.priority", 17};
    const spanhost_value *v = util_find(&span->attributes, key);
    double d;
    if (!v) return -1;
    if (v->type == SPANHOST_VALUE_BOOL || util_value_number(v, &d)) return -1;
    return d == 0 ? 0 : d > 0 ? 1 : -1;
}

static int all_zero(const uint8_t *id, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (id[i]) return 0;
    return 1;
}

/* Whether to keep the span; rewrites its tracestate when kept. -1 when out of memory. */
static int decide(sampler *s, spanhost_batch *batch, spanhost_span *span, int64_t *errors) {
    int priority = sampling_priority(span);
    if (priority == 0) return 0;
    uint64_t threshold = priority == 1 ? 0 : NEVER;
    tracestate ts;
    int readable = parse_tracestate(span->trace_state, &ts) == 0;
    int ok = readable;
    uint64_t rnd = 0;
    if (s->mode == HASH_SEED) {
        rnd = hashed_randomness(fnv_seeded(s->seed, span->trace_id));
        if (readable && (ts.has_rv || ts.has_th)) ok = 0; /* another sampler's consistent sampling is in use */
        else if (readable) { ts.rv = rnd; ts.has_rv = 1; ts.rv_text = (spanhost_str){NULL, 0}; }
    } else if (readable && ts.has_rv) {
        rnd = ts.rv;
    } else if (!all_zero(span->trace_id, 16)) {
        for (int i = 9; i < 16; i++) rnd = rnd << 8 | span->trace_id[i];
    } else {
        ok = 0; /* no randomness */
    }
    if (ok && ts.has_th && rnd < ts.th) { /* the arriving threshold says this span should not be here */
        ts.has_th = 0;
        ok = 0;
    }
    if (!ok) (*errors)++;
    if (priority == -1 && (ok || !s->fail_closed)) {
        if (s->mode == PROPORTIONAL) {
            double incoming = ts.has_th ? (double)(MAX_ADJUSTED - ts.th) / (double)MAX_ADJUSTED : 1.0;
            threshold = probability_threshold(incoming * s->ratio, s->precision);
        } else {
            threshold = s->threshold;
        }
    }
    if (threshold >= NEVER || rnd < threshold) return 0;
    if (!readable) return 1;
    /* A stricter arriving threshold stays as it came (the Collector's UpdateTValueWithSampling). */
    if (!(ts.has_th && ts.th > threshold)) { ts.th = threshold; ts.has_th = 1; ts.th_text = (spanhost_str){NULL, 0}; }
    return write_tracestate(batch, span, &ts) ? -1 : 1;
}

static int32_t create(const spanhost_config *config, spanhost_instance *instance, void **out, spanhost_status *status) {
    double pct = 0;
    int64_t seed = 0, precision = 4;
    int32_t fail_closed = 1;
    if (host->config_double(config, "sampling_percentage", &pct) != SPANHOST_CONFIG_FOUND || !(pct >= 0) || pct > 3.4e38) {
        snprintf(status->message, status->message_cap, "sampling_percentage: required, a number from 0 to 100 (more is 100)");
        return SPANHOST_PERMANENT;
    }
    uint32_t has_seed = host->config_int(config, "hash_seed", &seed);
    if (has_seed == SPANHOST_CONFIG_WRONG_TYPE || seed < 0 || seed > UINT32_MAX) {
        snprintf(status->message, status->message_cap, "hash_seed: must be an integer from 0 to 4294967295");
        return SPANHOST_PERMANENT;
    }
    if (host->config_int(config, "sampling_precision", &precision) == SPANHOST_CONFIG_WRONG_TYPE || precision < 1 || precision > HEX_DIGITS) {
        snprintf(status->message, status->message_cap, "sampling_precision: must be an integer from 1 to 14");
        return SPANHOST_PERMANENT;
    }
    if (host->config_bool(config, "fail_closed", &fail_closed) == SPANHOST_CONFIG_WRONG_TYPE) {
        snprintf(status->message, status->message_cap, "fail_closed: must be true or false");
        return SPANHOST_PERMANENT;
    }
    /* The Collector's logs-only keys: accepted, never used (spanhost carries traces). */
    spanhost_str logs_only;
    host->config_string(config, "attribute_source", &logs_only);
    host->config_string(config, "from_attribute", &logs_only);
    host->config_string(config, "sampling_priority", &logs_only);
    int mode = seed != 0 ? HASH_SEED : PROPORTIONAL;
    spanhost_str name;
    if (host->config_string(config, "mode", &name) == SPANHOST_CONFIG_FOUND && name.len) {
        if (util_str_is(name, "proportional")) mode = PROPORTIONAL;
        else if (util_str_is(name, "equalizing")) mode = EQUALIZING;
        else if (util_str_is(name, "hash_seed")) mode = HASH_SEED;
        else {
            snprintf(status->message, status->message_cap, "mode: '%.*s' is not proportional, equalizing or hash_seed", (int)name.len, name.ptr);
            return SPANHOST_PERMANENT;
        }
    }
    sampler *s = (sampler *)calloc(1, sizeof *s);
    if (!s) return SPANHOST_PERMANENT;
    s->instance = instance;
    s->kept_spans = util_counter_declare(host, instance, "kept_spans");
    s->dropped_spans = util_counter_declare(host, instance, "dropped_spans");
    s->mode = mode;
    s->seed = (uint32_t)seed;
    s->precision = (int)precision;
    s->fail_closed = fail_closed;
    if (pct > 100) pct = 100;
    pct = (float)pct; /* the Collector's sampling_percentage is a float32 */
    s->ratio = pct / 100;
    if (s->ratio > 0 && s->ratio < 1.0 / (double)MAX_ADJUSTED) s->ratio = 1.0 / (double)MAX_ADJUSTED;
    if (pct == 0) {
        s->threshold = NEVER;
        s->ratio = 0;
    } else if (mode == HASH_SEED) {
        /* As the Collector: the product in 32-bit float, truncated. */
        uint32_t scaled = (uint32_t)((float)pct * (float)(0x4000 / 100.0));
        s->threshold = scaled ? (uint64_t)(0x4000 - scaled) << 42 : NEVER;
    } else {
        s->threshold = probability_threshold(s->ratio, s->precision);
    }
    *out = s;
    return SPANHOST_OK;
}

static int32_t process(void *state, spanhost_batch *batch, spanhost_status *status) {
    sampler *s = (sampler *)state;
    int64_t kept = 0, dropped = 0, errors = 0;
    for (util_span_iter it = util_spans(batch); util_next_span(&it);) {
        spanhost_span *span = it.span;
        int keep = decide(s, batch, span, &errors);
        if (keep < 0) {
            snprintf(status->message, status->message_cap, "out of memory");
            return SPANHOST_RETRYABLE;
        }
        if (keep) {
            kept++;
        } else {
            span->host_flags |= SPANHOST_SPAN_DROP;
            dropped++;
        }
    }
    util_counter_add(host, s->instance, s->kept_spans, kept);
    util_counter_add(host, s->instance, s->dropped_spans, dropped);
    if (errors) host->counter_add(s->instance, "tracestate_errors", errors);
    return SPANHOST_OK;
}

static void destroy(void *state) { free(state); }

static const spanhost_config_key config_keys[] = {
    {"sampling_percentage", SPANHOST_TYPE_DOUBLE, 1, NULL, "0 to 100 (fractions allowed)"},
    {"mode", SPANHOST_TYPE_STRING, 0, NULL, "proportional, equalizing or hash_seed (default: proportional, hash_seed with a seed)"},
    {"hash_seed", SPANHOST_TYPE_INT, 0, "0", "hash_seed mode: instances that must agree use the same seed"},
    {"sampling_precision", SPANHOST_TYPE_INT, 0, "4", "hex digits of the threshold written to the tracestate"},
    {"fail_closed", SPANHOST_TYPE_BOOL, 0, "true", "drop spans whose tracestate is malformed or inconsistent"},
    {"attribute_source", SPANHOST_TYPE_STRING, 0, "traceID", "logs only: accepted, never used"},
    {"from_attribute", SPANHOST_TYPE_STRING, 0, NULL, "logs only: accepted, never used"},
    {"sampling_priority", SPANHOST_TYPE_STRING, 0, NULL, "logs only: accepted, never used"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_PROCESSOR,
    .flags = SPANHOST_PLUGIN_CONCURRENT | SPANHOST_PLUGIN_UNLOADABLE | SPANHOST_PLUGIN_NONBLOCKING,
    .name = "probabilistic_sampler",
    .version = "2.0.0",
    .description = "keeps a percentage of traces, with OpenTelemetry consistent probability sampling",
    .create = create,
    .process = process,
    .destroy = destroy,
    SPANHOST_CONFIG_SCHEMA(config_keys),
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *api) {
    host = api;
    return &plugin;
}
