"""Code shared by the server and the worker: settings, models, queue keys, errors, updates."""
