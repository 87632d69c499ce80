/* resource processor: the Collector's resourceprocessor. Changes every resource's attributes.
 *
 * Config:
 *   attributes:                        applied in order, as the attributes processor's actions
 *     - {key: cloud.zone, value: zone-1, action: upsert}
 *     - {key: k8s.cluster.name, from_attribute: k8s-cluster, action: insert}
 *     - {key: redundant-attribute, action: delete}
 *     - {key: host.id, action: hash}
 *     - {key: image, pattern: "^(?P<registry>[^/]+)/(?P<repository>.*)$", action: extract}
 *
 * The code is the attributes processor's (plugins/attributes), built with RESOURCE_PROCESSOR.
 */
#define RESOURCE_PROCESSOR 1
#include "../attributes/attributes.c"
