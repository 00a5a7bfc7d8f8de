"""Writes on backup points and backups, one module per feature, and the handlers their tasks run.

`points` (backup points), `create` (full and incremental backups), `delete` (with the merge into a
dependent), `restore`, `verify`, `prune` (expiry) and `reconcile` (the backup-point repair scope);
`common` holds what they share. Reads are in `backups.selectors`. Each public function validates
everything before it writes, so a rejected request changes nothing. Storage work runs in tasks
(`backups.tasks`) through `operation_run`; files are `backups.storage`'s.
"""
