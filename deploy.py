"""Roll ups-nut-smart out to every Pi of an inventory (docs/fleet.md):

pyinfra inventory deploy.py --dry --diff     # what would change, per host
pyinfra inventory deploy.py -y               # do it
pyinfra inventory deploy.py -y --limit canary  # one group first

With FLEET_FILE_SD=<path> in the controller's environment, a run also writes there the
Prometheus file_sd targets of the inventory's Pis with metrics_port (fleet/status.py).
"""

from fleet.status import file_sd_in_deploy
from fleet.steps import rollout

file_sd_in_deploy()
rollout()
