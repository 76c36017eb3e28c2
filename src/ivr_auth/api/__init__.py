"""The public HTTP side-API (v1): ``app.make_app`` builds it from a config,
a store and the readiness checks of the process that serves it."""
