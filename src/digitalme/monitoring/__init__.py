"""The reusable monitoring layer. It never imports :mod:`digitalme.host`."""
