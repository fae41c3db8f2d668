"""The fleet rollout: `pyinfra inventory/hosts.py deploy.py` brings every Pi to the same
state (see steps.py for what a run converges, README "Fleet" for how to use it).

  data.py    host data: the keys, their defaults, validation
  render.py  what lands on a host (templates/fleet.*.j2)
  image.py   the image on the controller: ID, arch, buildx, save
  facts.py   facts pyinfra has no fact for (compose, engine)
  ops.py     operations pyinfra has no equivalent for (secret file, image, health gate)
  steps.py   the @deploy steps
"""
