#include "outbox/kafka/produce.hpp"

#include <array>

namespace outbox::kafka {

error_ptr produce(rd_kafka_t* rk, const outgoing& r) {
  std::array<rd_kafka_vu_t, 7> vus{};
  std::size_t n = 0;
  std::string topic_copy;  // produceva wants a NUL-terminated name
  if (r.topic_handle != nullptr) {
    vus[n].vtype = RD_KAFKA_VTYPE_RKT;
    vus[n++].u.rkt = r.topic_handle;
  } else {
    topic_copy.assign(r.topic);
    vus[n].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[n++].u.cstr = topic_copy.c_str();
  }
  vus[n].vtype = RD_KAFKA_VTYPE_PARTITION;
  vus[n++].u.i32 = r.partition;
  vus[n].vtype = RD_KAFKA_VTYPE_KEY;
  vus[n++].u.mem = {r.key ? const_cast<char*>(r.key->data()) : nullptr, r.key ? r.key->size() : 0};
  vus[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[n++].u.mem = {r.value ? const_cast<char*>(r.value->data()) : nullptr, r.value ? r.value->size() : 0};
  vus[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[n++].u.i = RD_KAFKA_MSG_F_COPY;
  if (r.headers != nullptr) {
    vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[n++].u.headers = r.headers;
  }
  vus[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[n++].u.ptr = r.opaque;
  return error_ptr(rd_kafka_produceva(rk, vus.data(), n));
}

}  // namespace outbox::kafka
