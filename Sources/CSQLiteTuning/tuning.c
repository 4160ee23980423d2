#define _GNU_SOURCE
#include "CSQLiteTuning.h"
#include <pthread.h>
#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call.
int telemetry_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

// pthread_setname_np needs _GNU_SOURCE, which Swift's Glibc module does not define.
int telemetry_name_current_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
