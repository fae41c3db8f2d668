# Jinja2 templates of the five NUT files, installed as the package reconcile.templates.
