"""The fleet rollout: `pyinfra inventory deploy.py` brings every Pi to the same
state (see steps.py for what a run converges, docs/fleet.md for how to use it).

  config.py    HostConfig: one host's data, validated
  data.py      host data: the keys, their defaults, one validator per key
  render.py    what lands on a host (fleet/templates/*.j2), every value through a filter
  image.py     the image on the controller: ID, arch, buildx, save
  facts.py     facts pyinfra has no fact for (compose, engine, the agent's status)
  ops.py       operations pyinfra has no equivalent for (refuse, secret file, image)
  rollback.py  the snapshot before a run and the health gate with its rollback
  steps.py     the @deploy steps
  report.py    the fleet status's rows, table, JSON and Prometheus file_sd list (pure)
  status.py    `python -m fleet.status INVENTORY`: every Pi's status, read with pyinfra's API
"""
