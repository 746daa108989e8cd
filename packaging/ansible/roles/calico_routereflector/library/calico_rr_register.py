#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Part of the calico_routereflector Ansible role (calico-routereflector, Apache-2.0).
"""Idempotent `calico-rr register`: an Ansible module that runs on the reflector host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: calico_rr_register
short_description: Register a calico-routereflector host in its datastore, idempotently
description:
  - Computes, with the package's own code, what C(calico-rr register) would store for this
    reflector and compares it with what the datastore holds. Only when they differ does it
    run C(calico-rr register), so C(changed) means the datastore was (or, in check mode,
    would be) written.
  - Calico v1 data (C([etcd] schema) v1, or auto without v3 Nodes): the C(rr_v4/<ip>) and
    C(rr_v6/<ip6>) entries. Calico v3 data: the reflector's BGPPeers
    C(calico-rr-<node_name>-ipv4) and C(-ipv6) (peerIP = its address; every Node they apply to
    peers with it, and the other reflectors mesh with it), or with C(node) its Calico Node
    resource. Fields the reflector does not own are kept.
  - Runs on the target with the Python that has the package's C(rr_service) module
    (Debian's /usr/bin/python3). Supports check mode and diff mode.
options:
  config:
    description: The calico-routereflector settings file.
    type: path
    default: /etc/calico-routereflector/config.toml
  cluster_id:
    description:
      - Route-reflector cluster id (dotted quad). v1 entries store it as given (empty means
        none); with v3 data an empty value keeps the stored cluster id.
    type: str
    default: ""
  labels:
    description: v3 only, labels to set on the BGPPeers (or with C(node) the Node); other labels are kept.
    type: dict
    default: {}
  node:
    description: v3 only, register the reflector as a Calico Node resource instead of BGPPeers.
    type: bool
    default: false
  as_number:
    description: v3 BGPPeers only, the AS the nodes peer with the reflector in (default the stored one, else the cluster's).
    type: str
    default: ""
  node_selector:
    description: v3 BGPPeers only, the Calico selector of the Nodes that peer with the reflector (default all).
    type: str
    default: ""
author: calico-routereflector team
"""

EXAMPLES = r"""
- name: Register the reflector in etcd
  calico_rr_register:
    cluster_id: 244.0.0.1
"""

RETURN = r"""
schema:
  description: The Calico data model the entries were written in (v1 or v3).
  type: str
  returned: success
keys:
  description: Where this reflector's entries are in the datastore (etcd keys).
  type: list
  elements: str
  returned: success
stdout:
  description: What C(calico-rr register) printed, when it ran.
  type: str
  returned: changed and not in check mode
"""

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

CALICO_RR = "/usr/bin/calico-rr"


def _parsed(raw):
    """A stored value as JSON (for a comparison that ignores formatting), else the text."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _ignoring_new_ids(before, after):
    """A BGPPeer or Node register would create gets a fresh uid and timestamp each time: they
    are not a difference worth reporting in check mode."""
    if before is None and isinstance(after, dict):
        metadata = dict(after.get("metadata") or {})
        metadata.pop("uid", None)
        metadata.pop("creationTimestamp", None)
        after = dict(after, metadata=metadata)
    return after


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="path", default="/etc/calico-routereflector/config.toml"),
            cluster_id=dict(type="str", default=""),
            labels=dict(type="dict", default={}),
            node=dict(type="bool", default=False),
            as_number=dict(type="str", default=""),
            node_selector=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    config = params["config"]
    labels = {str(k): str(v) for k, v in (params["labels"] or {}).items()}

    try:
        from rr_service.app import register, wiring
        from rr_service.app.settings import SettingsError, load_settings
        from rr_service.core.values import InvalidValue
        from rr_service.sources.base import DatastoreError
    except ImportError as exc:
        if module.check_mode:
            module.exit_json(changed=True, msg="calico-routereflector is not installed yet (check mode)")
        module.fail_json(msg="calico-routereflector's rr_service is not importable: %s" % exc)
    if module.check_mode and not os.path.exists(config):
        module.exit_json(changed=True, msg="%s does not exist yet (check mode)" % config)

    options = register.Options(cluster_id=params["cluster_id"] or None, labels=labels, node=params["node"],
                               as_number=params["as_number"] or None, node_selector=params["node_selector"] or None)
    try:
        # As `calico-rr register` below reads them: the file, then the environment.
        settings = load_settings(config)
        source = wiring.source(settings)
        try:
            schema, writes = register.writes(settings, source, options)
            before, after = {}, {}
            for write in writes:
                where = source.where(write.key)
                current = source.get(write.key)
                before[where] = _parsed(current)
                after[where] = _ignoring_new_ids(current, _parsed(write.change(current)))
        finally:
            source.close()
    except register.RegisterError as exc:
        module.fail_json(msg="calico-rr register: %s" % exc)
    except (SettingsError, InvalidValue) as exc:
        module.fail_json(msg="calico-rr register: %s" % exc)
    except DatastoreError as exc:
        module.fail_json(msg="calico-rr register: datastore: %s" % exc)

    changed = before != after
    result = dict(changed=changed, schema=schema, keys=sorted(before))
    if module._diff:
        result["diff"] = dict(before=json.dumps(before, indent=2, sort_keys=True) + "\n",
                              after=json.dumps(after, indent=2, sort_keys=True) + "\n",
                              before_header="datastore", after_header="datastore")
    if changed and not module.check_mode:
        # The write itself is the package's own command.
        cmd = [CALICO_RR, "--config", config, "register"]
        if params["cluster_id"]:
            cmd += ["--cluster-id", params["cluster_id"]]
        if params["node"]:
            cmd += ["--node"]
        if params["as_number"]:
            cmd += ["--as-number", params["as_number"]]
        if params["node_selector"]:
            cmd += ["--node-selector", params["node_selector"]]
        for k, v in sorted(labels.items()):
            cmd += ["--label", "%s=%s" % (k, v)]
        # Not module.run_command: its preexec_fn makes Python fork(), and after the etcd read
        # above gRPC's pre-fork handler waits for gRPC's threads for ever (seen on Debian 13,
        # python3-grpcio 1.51 and Python 3.13: the task hung; GRPC_ENABLE_FORK_SUPPORT=false
        # did not help). Without preexec_fn CPython starts the child with vfork(), which runs
        # no fork handlers.
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        rc, out, err = p.returncode, p.stdout, p.stderr
        if rc != 0:
            module.fail_json(msg="calico-rr register failed (%d): %s" % (rc, (err or out).strip()),
                             cmd=cmd, stdout=out, stderr=err)
        result["stdout"] = out
    module.exit_json(**result)


if __name__ == "__main__":
    main()
