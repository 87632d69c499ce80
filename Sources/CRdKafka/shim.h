/* librdkafka for Swift (the kafka receiver). */
#include <librdkafka/rdkafka.h>
