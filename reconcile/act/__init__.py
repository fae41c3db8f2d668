"""Act: the only code that changes the system (files, NUT daemons, the run loop)."""
