"""The etcd datastore: Calico's v1 keys and v3 resources, over etcd's v3 API (python-etcd3).

Only this package imports etcd3 and grpc. `config` imports neither (the settings use it);
`source` is what the rest of the reflector talks to.
"""

import os

# gRPC's C core prints its own raw line for TLS failures to stderr ("E1125 ...
# ssl_transport_security.cc:1501] Handshake failed ..."), on every retry: `calico-rr render`
# showed it above our one-line error and the daemon's journal would get one every 2 s of an
# outage. Our messages say it once, in words (errors.explain). Read when gRPC initialises, so set
# before its first import; GRPC_VERBOSITY=ERROR in the environment brings the lines back.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
