# Data for every host (overrides fleet/data.py's defaults). Passwords do not belong here:
# give them in the controller's environment (NUT_MONUSER_PASSWORD) or let each Pi generate its own.
image = "ups-nut-smart:latest"
image_source = "load"
