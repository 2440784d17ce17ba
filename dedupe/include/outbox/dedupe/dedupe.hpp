#pragma once

#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"
#include "outbox/dedupe/redis_url.hpp"
#include "outbox/dedupe/store.hpp"
