#!/usr/bin/python3
# -*- coding: utf-8 -*-
# Part of the calico_routereflector Ansible role (calico-routereflector, Apache-2.0).
"""BIRD's open-files limit: what each running BIRD has, and what a restart would give it."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: calico_rr_bird_nofile
short_description: Tell a running BIRD that still has fewer open files than its unit allows
description:
  - BIRD holds a socket per BGP session. The calico-routereflector package raises the
    C(LimitNOFILE) of BIRD's units with drop-ins, which a running BIRD only gets at its next
    start. For each unit this reads the running process's soft limit
    (C(/proc/<MainPID>/limits)) and the limit a restart would give it: the unit's
    C(LimitNOFILESoft), capped by the hard limit of PID 1 (systemd cannot hand out more).
  - Reads only; never changed. Supports check mode.
options:
  units:
    description: BIRD's systemd units, e.g. C([bird.service, bird6.service]).
    type: list
    elements: str
    required: true
author: calico-routereflector team
"""

EXAMPLES = r"""
- name: Read BIRD's open-files limit
  calico_rr_bird_nofile:
    units: [bird.service]
  register: nofile
"""

RETURN = r"""
units:
  description: Per unit, C(unit), C(pid) (0 when not running), C(running) (the process's soft
    limit, null when not running) and C(after_restart).
  type: list
  elements: dict
  returned: success
stale:
  description: The entries of C(units) whose running BIRD has less than C(after_restart).
  type: list
  elements: dict
  returned: success
"""

import sys

from ansible.module_utils.basic import AnsibleModule


def _number(text):
    return sys.maxsize if text in ("infinity", "unlimited") else int(text)


def _nofile(limits_file, column):
    """Column 0 (soft) or 1 (hard) of "Max open files" in a /proc/PID/limits; None when the
    process is gone."""
    try:
        with open(limits_file, encoding="ascii") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return _number(line[len("Max open files"):].split()[column])
    except FileNotFoundError:
        return None
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(units=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    ceiling = _nofile("/proc/1/limits", 1)
    units = []
    for unit in module.params["units"]:
        _, out, _ = module.run_command(["systemctl", "show", "-p", "MainPID", "-p", "LimitNOFILESoft",
                                        "--", unit], check_rc=True)
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        pid = int(props.get("MainPID") or 0)
        units.append(dict(unit=unit, pid=pid,
                          running=_nofile(f"/proc/{pid}/limits", 0) if pid else None,
                          after_restart=min(_number(props["LimitNOFILESoft"]), ceiling or sys.maxsize)))
    stale = [u for u in units if u["running"] is not None and u["running"] < u["after_restart"]]
    module.exit_json(changed=False, units=units, stale=stale)


if __name__ == "__main__":
    main()
