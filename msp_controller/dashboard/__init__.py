"""The live web dashboard: the homenets at a glance and each one in full, pushed by
server-sent events as the core changes (see web.py for the endpoints)."""
