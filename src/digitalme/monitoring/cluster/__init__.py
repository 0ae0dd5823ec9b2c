"""Several instances on one store: the leader lease, the other instances' data, admin
changes forwarded to the leader."""
