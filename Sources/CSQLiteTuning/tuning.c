#define _GNU_SOURCE
#include "CSQLiteTuning.h"
#include <malloc.h>
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

// mallopt and its constants are in <malloc.h>, which Swift's Glibc module does not export.
int telemetry_fix_mmap_threshold(int bytes) {
    return mallopt(M_MMAP_THRESHOLD, bytes);
}
