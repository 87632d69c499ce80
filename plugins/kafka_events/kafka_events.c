/* kafka_events notifier: publishes each event to a Kafka topic, for example error-flow records
 * to an `error` topic. It is the kafka exporter's source built as a notifier.
 *
 * Config: brokers, acks, compression, linger_ms, batch_size, timeout, properties as for the
 * kafka exporter, and
 *   topic: spanhost_events          (default spanhost_events)
 *   payload: event | <attribute>    event (default): the event's JSON; an attribute key such as
 *                                   omegi: only that attribute's value, as JSON
 * Messages are keyed by the event's trace id in hex (by its key when it has none).
 */
#define KAFKA_EVENTS
#include "../kafka/kafka.c"
