/* exec_pgids.h - exec.c's side of the process-group table (exec_pgids.c); the table's public
 * calls (exec_set_pgid_table, exec_clear_pgid_table, exec_kill_all_signal_safe) are in exec.h. */
#ifndef CHATGW_EXEC_PGIDS_H
#define CHATGW_EXEC_PGIDS_H

/* A child's process group (its pid) into a free slot; a WARN when the table is full. */
void exec__pgid_add(int pid);
/* Frees the child's slot. */
void exec__pgid_remove(int pid);

#endif
