"""Roll ups-nut-smart out to every Pi of an inventory (docs/fleet.md):

pyinfra inventory/hosts.py deploy.py --dry --diff     # what would change, per host
pyinfra inventory/hosts.py deploy.py -y               # do it
pyinfra inventory/hosts.py deploy.py -y --limit canary  # one group first
"""

from fleet.steps import rollout

rollout()
