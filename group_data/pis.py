# Data for the `pis` group of inventory/hosts.py.
scan_interval = 2
settle_time = 2
