"""The Ray runtime: the dispatcher that moves queued jobs onto Ray, the tasks it launches, the
progress board they report to, data-parallel training over Ray Train and the orphan guard."""
