"""The trainer's side: which Python runs sd-scripts, what it can do (probed), what a config needs of it, launching."""
