"""The task ledger: what every request cost, summed per task, in Redis."""
