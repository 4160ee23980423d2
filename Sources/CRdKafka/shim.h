// librdkafka (Debian librdkafka-dev) and its mock cluster, for TelemetryKafka (trait Kafka).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// Produces one message to the topic handle `rkt` (the key copied, the payload not: it must stay
/// valid until the message's delivery report) with `headers` (owned by librdkafka on success, by
/// the caller on failure) and `opaque` for its delivery report: rd_kafka_produceva with the argument
/// array built here, since its union is awkward from Swift.
static inline rd_kafka_error_t *xt_produce(
    rd_kafka_t *rk, rd_kafka_topic_t *rkt, const void *key, size_t key_len, const void *value, size_t value_len,
    rd_kafka_headers_t *headers, void *opaque) {
    rd_kafka_vu_t vus[6];
    vus[0].vtype = RD_KAFKA_VTYPE_RKT;
    vus[0].u.rkt = rkt;
    vus[1].vtype = RD_KAFKA_VTYPE_KEY;
    vus[1].u.mem.ptr = (void *)key;
    vus[1].u.mem.size = key_len;
    vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[2].u.mem.ptr = (void *)value;
    vus[2].u.mem.size = value_len;
    vus[3].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[3].u.headers = headers;
    vus[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vus[4].u.ptr = opaque;
    vus[5].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[5].u.i = 0;
    return rd_kafka_produceva(rk, vus, 6);
}
