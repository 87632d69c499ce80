/* A function library: adds three functions to expressions, and nothing else.
 *
 *   geo_country(string) -> string   the country of an IPv4 address, from a small table: the
 *                                   file named by GEO_COUNTRY_TABLE ("cidr country" lines),
 *                                   or the built-in one below; "" when no entry matches
 *   hash_bucket(string, int) -> int a stable bucket in [0, n) for a string (FNV-1a)
 *   keep_fraction(string, double) -> bool
 *                                   true for about that fraction of strings, the same each
 *                                   time for one string (consistent sampling by user id)
 *
 * Load it with `plugins: {functions: [example_functions]}`, then write for example
 *   filter:    traces: {span: ['geo_country(attributes["client.ip"]) == "KR"']}
 *   transform: set(attributes["bucket"], hash_bucket(attributes["user.id"], 16))
 */
#include <spanhost/spanhost.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct route {
    unsigned long network, mask;
    char country[3];
} route;

static route table[256] = {
    {0x01D00000UL, 0xFFF00000UL, "KR"}, /* 1.208.0.0/12 */
    {0x0E000000UL, 0xFF000000UL, "JP"}, /* 14.0.0.0/8 */
    {0x08080800UL, 0xFFFFFF00UL, "US"}, /* 8.8.8.0/24 */
    {0xC0A80000UL, 0xFFFF0000UL, "ZZ"}, /* 192.168.0.0/16, private */
};
static size_t routes = 4;

/* "a.b.c.d" to a number; 0 when it is not an IPv4 address. */
static int parse_ipv4(const char *p, size_t len, unsigned long *out) {
    unsigned long value = 0, part = 0;
    int dots = 0, digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= '0' && p[i] <= '9') {
            part = part * 10 + (unsigned long)(p[i] - '0');
            if (part > 255 || ++digits > 3) return 0;
        } else if (p[i] == '.' && digits && dots < 3) {
            value = value << 8 | part;
            part = 0;
            digits = 0;
            dots++;
        } else {
            return 0;
        }
    }
    if (dots != 3 || !digits) return 0;
    *out = value << 8 | part;
    return 1;
}

static void load_table(const char *path) {
    FILE *f = fopen(path, "r");
    char line[128], cidr[64], country[8];
    if (!f) return;
    routes = 0;
    while (routes < sizeof table / sizeof table[0] && fgets(line, sizeof line, f)) {
        char *slash;
        unsigned long network;
        int bits;
        if (sscanf(line, "%63s %7s", cidr, country) != 2 || !(slash = strchr(cidr, '/'))) continue;
        *slash = 0;
        bits = atoi(slash + 1);
        if (bits < 0 || bits > 32 || !parse_ipv4(cidr, strlen(cidr), &network)) continue;
        table[routes].mask = bits ? (0xFFFFFFFFUL << (32 - bits)) & 0xFFFFFFFFUL : 0;
        table[routes].network = network & table[routes].mask;
        memcpy(table[routes].country, country, 2);
        table[routes].country[2] = 0;
        routes++;
    }
    fclose(f);
}

static int32_t geo_country(spanhost_str ip, spanhost_str *result, spanhost_status *status) {
    unsigned long address;
    (void)status;
    result->ptr = "";
    result->len = 0;
    if (!parse_ipv4(ip.ptr, ip.len, &address)) return SPANHOST_OK;
    for (size_t i = 0; i < routes; i++)
        if ((address & table[i].mask) == table[i].network) {
            result->ptr = table[i].country; /* static: stays valid */
            result->len = strlen(table[i].country);
            break;
        }
    return SPANHOST_OK;
}

static unsigned long long fnv1a(spanhost_str s) {
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int32_t hash_bucket(spanhost_str s, int64_t n, int64_t *result, spanhost_status *status) {
    if (n <= 0) {
        snprintf(status->message, status->message_cap, "hash_bucket: the bucket count must be at least 1, not %lld", (long long)n);
        return SPANHOST_PERMANENT;
    }
    *result = (int64_t)(fnv1a(s) % (unsigned long long)n);
    return SPANHOST_OK;
}

static int32_t keep_fraction(spanhost_str s, double fraction, int32_t *result, spanhost_status *status) {
    if (!(fraction >= 0 && fraction <= 1)) {
        snprintf(status->message, status->message_cap, "keep_fraction: the fraction must be from 0 to 1, not %g", fraction);
        return SPANHOST_PERMANENT;
    }
    *result = (double)(fnv1a(s) >> 11) < fraction * 9007199254740992.0; /* 2^53 */
    return SPANHOST_OK;
}

static const uint32_t one_string[] = {SPANHOST_ARG_STRING};
static const uint32_t string_and_int[] = {SPANHOST_ARG_STRING, SPANHOST_ARG_INT};
static const uint32_t string_and_double[] = {SPANHOST_ARG_STRING, SPANHOST_ARG_DOUBLE};

static const spanhost_function functions[] = {
    {sizeof(spanhost_function), "geo_country", SPANHOST_ARG_STRING, 1, one_string, (void (*)(void))geo_country,
     "the country code of an IPv4 address, or \"\""},
    {sizeof(spanhost_function), "hash_bucket", SPANHOST_ARG_INT, 2, string_and_int, (void (*)(void))hash_bucket,
     "a stable bucket in [0, n) for a string"},
    {sizeof(spanhost_function), "keep_fraction", SPANHOST_ARG_BOOL, 2, string_and_double, (void (*)(void))keep_fraction,
     "true for about that fraction of strings, always the same for one string"},
};

static const spanhost_plugin plugin = {
    .struct_size = sizeof(spanhost_plugin),
    .abi_major = SPANHOST_ABI_MAJOR,
    .abi_minor = SPANHOST_ABI_MINOR,
    .kind = SPANHOST_KIND_FUNCTIONS,
    .name = "example_functions",
    .version = "0.1.0",
    .description = "geo_country, hash_bucket and keep_fraction for expressions",
    .functions = functions,
    .functions_count = sizeof functions / sizeof functions[0],
};

SPANHOST_EXPORT const spanhost_plugin *spanhost_plugin_entry(const spanhost_host_api *host) {
    const char *path = getenv("GEO_COUNTRY_TABLE");
    (void)host;
    if (path) load_table(path);
    return &plugin;
}
