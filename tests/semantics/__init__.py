"""The semantic suite: what every engine (eager today, the dask cluster later) must do."""
