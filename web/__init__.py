"""The viewer's static files, installed as the package ``logtail.viewer``.

This file makes web/ a regular package, so importlib.resources finds the files in a wheel
and in an editable checkout alike; logtail.web does not serve it.
"""
