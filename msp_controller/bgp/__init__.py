"""Ryu's BGP speaker, extended: per-neighbour next hops and prepends, graceful restart."""
