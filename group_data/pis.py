# Data for the `pis` group of the inventory (the example: the file `inventory`).
scan_interval = 2
settle_time = 2
