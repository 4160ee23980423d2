#ifndef C_SPAWN_H
#define C_SPAWN_H

#include <spawn.h>

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+): closes every descriptor from `from` up
/// in the child. glibc declares it only for _GNU_SOURCE builds, which Swift's Glibc module is not.
int telemetry_spawn_add_close_from(posix_spawn_file_actions_t *actions, int from);

/// posix_spawn_file_actions_addchdir_np (glibc 2.29+): the child's working directory.
int telemetry_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path);

/// pipe2(fds, O_CLOEXEC): a pipe whose ends no child inherits unless given them on purpose.
int telemetry_spawn_pipe(int fds[2]);

#endif
