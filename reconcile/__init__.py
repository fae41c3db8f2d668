"""nut-reconcile: keeps Network UPS Tools serving USB UPSes that come and go.

Layout follows the reconcile pattern:
  observe/  what is there (USB bus, NUT files and processes)
  decide/   pure functions from observations to desired state and to a plan
  act/      the only code that changes the system (files, daemons, the run loop)
"""

__version__ = "0.1.0"
