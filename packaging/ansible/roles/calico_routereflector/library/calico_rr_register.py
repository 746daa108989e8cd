#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Part of the calico_routereflector Ansible role (calico-routereflector, Apache-2.0).
"""Idempotent `calico-rr register`: an Ansible module that runs on the reflector host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: calico_rr_register
short_description: Register a calico-routereflector host in etcd, idempotently
description:
  - Reads this reflector's entries from etcd with the host's calico-routereflector settings
    and compares them with what C(calico-rr register) would store. Only when they differ
    does it run C(calico-rr register), so C(changed) means etcd was (or, in check mode,
    would be) written.
  - Calico v1 data (C([etcd] schema) v1, or auto without v3 Nodes): the C(rr_v4/<ip>) and
    C(rr_v6/<ip6>) entries. Calico v3 data: the reflector's Node resource (its BGP
    addresses, C(routeReflectorClusterID) and the given labels; other fields are kept).
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
        none); with v3 data an empty value keeps the cluster id stored on the Node.
    type: str
    default: ""
  labels:
    description: v3 only, labels to set on the Node (other labels are kept).
    type: dict
    default: {}
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
  description: The etcd keys of this reflector's entries.
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


def _v1_wanted(settings, cluster_id):
    """{key relative to [etcd] prefix: value} exactly as cmd_register writes it."""
    from rr_service.core.values import parse_cluster_id

    cid = parse_cluster_id(cluster_id) or ""
    wanted = {"rr_v4/" + settings.reflector.ip: {"ip": settings.reflector.ip, "cluster_id": cid}}
    if settings.reflector.ip6:
        wanted["rr_v6/" + settings.reflector.ip6] = {"ip": settings.reflector.ip6, "cluster_id": cid}
    return wanted


def _v1(module, settings, components, cluster_id):
    wanted = _v1_wanted(settings, cluster_id)
    store = components.datastore(settings)
    try:
        before = {key: _parsed(store.get(key)) for key in wanted}
    finally:
        store.close()
    prefix = settings.etcd.prefix
    return ([prefix + "/" + key for key in wanted],
            {prefix + "/" + k: v for k, v in before.items()},
            {prefix + "/" + k: v for k, v in wanted.items()})


def _v3(module, settings, components, cluster_id, labels):
    """The Node calico-rr register would store, computed with the package's own functions."""
    from rr_service.calico.v3 import register as v3_register
    from rr_service.app.local_addresses import prefix_length

    name = components.node_name(settings)
    key = "nodes/" + name
    store = components.datastore(settings, components.v3_resources.PREFIX)
    try:
        existing = store.get(key)
    finally:
        store.close()
    ipv4, ipv6 = v3_register.node_addresses(existing, (settings.reflector.ip, settings.reflector.ip6), prefix_length)
    after = v3_register.updated_node(existing, name, ipv4, ipv6, cluster_id or None,
                                     {str(k): str(v) for k, v in labels.items()})
    full = components.v3_resources.PREFIX + "/" + key
    return [full], {full: _parsed(existing)}, {full: _parsed(after)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="path", default="/etc/calico-routereflector/config.toml"),
            cluster_id=dict(type="str", default=""),
            labels=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    config = module.params["config"]
    cluster_id = module.params["cluster_id"] or ""
    labels = module.params["labels"] or {}

    try:
        from rr_service.app import wiring as components
        from rr_service.sources.base import DatastoreError
        from rr_service.core.values import InvalidValue
        from rr_service.app.settings import SettingsError, load_settings
    except ImportError as exc:
        if module.check_mode:
            module.exit_json(changed=True, msg="calico-routereflector is not installed yet (check mode)")
        module.fail_json(msg="calico-routereflector's rr_service is not importable: %s" % exc)
    if module.check_mode and not os.path.exists(config):
        module.exit_json(changed=True, msg="%s does not exist yet (check mode)" % config)

    try:
        # As `calico-rr register` below reads them: the file, then the environment.
        settings = load_settings(config)
        schema = components.decide_schema(settings)
        if labels and schema != "v3":
            module.fail_json(msg="labels need the Calico v3 data ([etcd] schema)")
        if schema == "v3":
            keys, before, after = _v3(module, settings, components, cluster_id, labels)
        else:
            keys, before, after = _v1(module, settings, components, cluster_id)
    except (SettingsError, InvalidValue) as exc:
        module.fail_json(msg="calico-rr register: %s" % exc)
    except DatastoreError as exc:
        module.fail_json(msg="calico-rr register: etcd: %s" % exc)

    changed = before != after
    result = dict(changed=changed, schema=schema, keys=keys)
    if module._diff:
        result["diff"] = dict(before=json.dumps(before, indent=2, sort_keys=True) + "\n",
                              after=json.dumps(after, indent=2, sort_keys=True) + "\n",
                              before_header="etcd", after_header="etcd")
    if changed and not module.check_mode:
        # The write itself is the package's own command.
        cmd = [CALICO_RR, "--config", config, "register"]
        if cluster_id:
            cmd += ["--cluster-id", cluster_id]
        for k, v in sorted(labels.items()):
            cmd += ["--label", "%s=%s" % (k, v)]
        rc, out, err = module.run_command(cmd)
        if rc != 0:
            module.fail_json(msg="calico-rr register failed (%d): %s" % (rc, (err or out).strip()),
                             cmd=cmd, stdout=out, stderr=err)
        result["stdout"] = out
    module.exit_json(**result)


if __name__ == "__main__":
    main()
