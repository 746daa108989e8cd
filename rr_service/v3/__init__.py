"""Pure helpers for Calico's v3 resources (Node, BGPPeer, BGPConfiguration)."""
