#ifndef C_SQLITE_TUNING_H
#define C_SQLITE_TUNING_H

/// Turns off SQLite's memory statistics for the process: with them on (SQLite's default), every
/// allocation SQLite makes takes one process-wide mutex, which the events writer, the pairing
/// thread and the readers then contend for. Must run before SQLite initializes (before the first
/// connection opens); returns SQLite's result code (SQLITE_MISUSE when it is too late).
int telemetry_sqlite_disable_memory_statistics(void);

/// Names the calling thread (Linux keeps the first 15 bytes): the store's own threads, so that
/// `top -H`, perf and `bench ingest` tell them apart. Returns 0 or an error number.
int telemetry_name_current_thread(const char *name);

/// Fixes glibc's mmap threshold at `bytes` (mallopt M_MMAP_THRESHOLD, which also stops glibc from
/// raising it as mapped blocks are freed). Returns 1 on success, 0 on failure.
int telemetry_fix_mmap_threshold(int bytes);

#endif
