// EventLog (see events.h).
#include "controller/events.h"

#include "absl/time/clock.h"
#include "common/log.h"
#include "controller/store/store.h"
#include "fmt/format.h"

namespace flotilla::controller {

v1::Event EventLog::make(std::string_view kind, std::string_view object,
                         v1::Event::Severity severity, std::string_view reason,
                         std::string message) {
  v1::Event event;
  event.set_unix_ms(absl::ToUnixMillis(absl::Now()));
  event.set_kind(std::string(kind));
  event.set_object(std::string(object));
  event.set_severity(severity);
  event.set_reason(std::string(reason));
  event.set_message(std::move(message));
  return event;
}

std::string EventLog::nextKey(int64_t unix_ms) {
  return fmt::format("{}{:013d}-{}-{:08d}", eventsPrefix(), unix_ms, replica_,
                     sequence_.fetch_add(1));
}

void EventLog::add(etcd::Txn& txn, const v1::Event& event) {
  txn.thenPut(nextKey(event.unix_ms()), encodeValue(event));
}

void EventLog::record(const v1::Event& event) {
  auto written = client_.put(nextKey(event.unix_ms()), encodeValue(event));
  if (!written.ok()) {
    Logger("controller")
        .warn("cannot record event {} {}: {}", event.reason(), event.object(),
              written.status().message());
  }
}

absl::Status EventLog::trim(uint32_t max_events) {
  etcd::RangeOptions options;
  options.prefix = true;
  options.keys_only = true;
  auto keys = client_.get(eventsPrefix(), options);
  if (!keys.ok()) return keys.status();
  if (keys->kvs.size() <= max_events) return absl::OkStatus();
  // Keys sort by time: the first ones are the oldest. At most 100 per pass (etcd allows 128
  // operations per transaction); the next pass deletes more.
  etcd::Txn txn;
  for (size_t i = 0; i + max_events < keys->kvs.size(); ++i) {
    txn.thenDelete(keys->kvs[i].key);
    if (i >= 100) break;
  }
  auto result = client_.txn(txn);
  return result.ok() ? absl::OkStatus() : result.status();
}

}  // namespace flotilla::controller
