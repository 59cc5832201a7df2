# METADATA
# title: fence-broker's fencing decision
# description: |
#   May this requester do this action to this target? A checklist: each deny
#   rule below is annotated with its reason code (custom.code) and its place in
#   the checklist (custom.rule); a request is allowed only when a permit rule
#   matches and no deny rule fires. policies/README.md's table is generated from
#   these annotations (npm run policy:table) and CI fails if it drifts.
#
#   Input (built by the broker; identity comes from the SSH key, never the request):
#     requester: {cluster, node} of a member node, or {admin}
#     action: gethosts | list | status | on | off | reset; target: a domain (absent for list/gethosts)
#     requester_fenced: the fence-race state (local or etcd), rule 10
#     recent_fences: domains of the cluster fenced in its storm window, rule 11
#   Data (derived from clusters.yaml, keyed so that every lookup is O(1)):
#     clusters.<c>.nodes.<n>.domain, clusters.<c>.actions.<a> = true,
#     clusters.<c>.allow_self_off, clusters.<c>.domains (sorted list),
#     clusters.<c>.limits.fences_per_window / window (seconds; absent: no limit),
#     domains.<d>.cluster, admins.<a> = {}
#   Reasons are {code, detail}; details use scalars only (sprintf runs in JS under wasm).
package fencing

# --- Helpers: the request's parts, "" where the input lacks them ------------

_known_actions := {"gethosts", "list", "status", "on", "off", "reset"}

_list_actions := {"gethosts", "list"}

_target_actions := {"status", "on", "off", "reset"}

_read_actions := {"gethosts", "list", "status"}

_fence_actions := {"off", "reset"}

_req_cluster := object.get(input, ["requester", "cluster"], "")

_req_node := object.get(input, ["requester", "node"], "")

_req_admin := object.get(input, ["requester", "admin"], "")

_action := object.get(input, "action", "")

_target := object.get(input, "target", "")

# The requester's cluster and member entry; undefined unless configured.
_cluster := data.clusters[_req_cluster]

_member := data.clusters[_req_cluster].nodes[_req_node]

_as_admin if _req_admin != ""

# A reason object, its code taken from the rule's own METADATA.
_because(meta, detail) := {"code": meta.custom.code, "detail": detail}

# METADATA
# title: The requester's cluster is configured
# description: A node key names a cluster; that cluster must exist in clusters.yaml.
# custom:
#   rule: 1
#   code: unknown_cluster
reasons contains _because(rego.metadata.rule(), sprintf("cluster %s is not configured", [_req_cluster])) if {
	not _as_admin
	not _cluster
}

# METADATA
# title: The requester is a member node of its cluster
# description: The node named by the key is listed under the cluster's nodes.
# custom:
#   rule: 1
#   code: not_a_member
reasons contains _because(
	rego.metadata.rule(),
	sprintf("node %s is not a member of cluster %s", [_req_node, _req_cluster]),
) if {
	not _as_admin
	_cluster
	not _member
}

# METADATA
# title: An admin requester is configured
# description: An admin key names an admin listed under admins.
# custom:
#   rule: 2
#   code: unknown_admin
reasons contains _because(rego.metadata.rule(), sprintf("admin %s is not configured", [_req_admin])) if {
	_as_admin
	not data.admins[_req_admin]
}

# METADATA
# title: The action is one the broker knows
# description: One of gethosts, list, status, on, off, reset.
# custom:
#   rule: 3
#   code: unknown_action
reasons contains _because(rego.metadata.rule(), sprintf("%s is not an action", [_action])) if {
	not _action in _known_actions
}

# METADATA
# title: The action is enabled for the requester's cluster
# description: Power and status actions must be listed in the cluster's actions.
# custom:
#   rule: 4
#   code: action_not_enabled
reasons contains _because(
	rego.metadata.rule(),
	sprintf("cluster %s does not enable %s", [_req_cluster, _action]),
) if {
	not _as_admin
	_action in _target_actions
	_cluster
	not _cluster.actions[_action]
}

# METADATA
# title: An action on a domain names its target
# description: status, on, off and reset need a target domain.
# custom:
#   rule: 5
#   code: target_missing
reasons contains _because(rego.metadata.rule(), sprintf("%s needs a target domain", [_action])) if {
	_action in _target_actions
	_target == ""
}

# METADATA
# title: A listing names no target
# description: list and gethosts take no target.
# custom:
#   rule: 5
#   code: target_unexpected
reasons contains _because(rego.metadata.rule(), sprintf("%s takes no target", [_action])) if {
	_action in _list_actions
	_target != ""
}

# METADATA
# title: The target domain is owned by a cluster
# description: A domain no cluster owns is nobody's to act on (tenants see the same reply as not_owned).
# custom:
#   rule: 6
#   code: target_unknown
reasons contains _because(rego.metadata.rule(), sprintf("domain %s is not owned by any cluster", [_target])) if {
	_action in _target_actions
	_target != ""
	not data.domains[_target]
}

# METADATA
# title: The target domain belongs to the requester's cluster
# description: A node acts only on its own cluster's domains (tenants see the same reply as unknown).
# custom:
#   rule: 6
#   code: target_not_owned
reasons contains _because(
	rego.metadata.rule(),
	sprintf("domain %s belongs to another cluster, not %s", [_target, _req_cluster]),
) if {
	not _as_admin
	_action in _target_actions
	owner := data.domains[_target].cluster
	owner != _req_cluster
}

# METADATA
# title: A node never powers on or resets its own domain
# description: Only a peer may bring a node back; a node resetting itself is not fencing.
# custom:
#   rule: 7
#   code: self_fence
reasons contains _because(
	rego.metadata.rule(),
	sprintf("node %s may not %s its own domain %s", [_req_node, _action, _target]),
) if {
	_action in {"on", "reset"}
	_member.domain == _target
}

# METADATA
# title: A node powers off its own domain only where its cluster allows it
# description: Self-off (suicide) needs allow_self_off true on the cluster.
# custom:
#   rule: 8
#   code: self_off
reasons contains _because(
	rego.metadata.rule(),
	sprintf("cluster %s does not allow node %s to power off its own domain", [_req_cluster, _req_node]),
) if {
	_action == "off"
	_member.domain == _target
	not _cluster.allow_self_off == true
}

# METADATA
# title: Admins are read-only
# description: An admin may list and read status, never change power.
# custom:
#   rule: 9
#   code: admin_read_only
reasons contains _because(rego.metadata.rule(), sprintf("admin %s may not %s", [_req_admin, _action])) if {
	_as_admin
	_action in _known_actions
	not _action in _read_actions
}

# METADATA
# title: The loser of a fence race changes no power
# description: |
#   A node whose own domain is being or was just fenced (input.requester_fenced) lost
#   the two-node race: exactly one side survives. It may still read, since
#   Pacemaker monitors its stonith device from the rebooted node.
# custom:
#   rule: 10
#   code: fence_race_lost
reasons contains _because(
	rego.metadata.rule(),
	sprintf("node %s's own domain is being or was just fenced; it may not %s", [_req_node, _action]),
) if {
	not _as_admin
	input.requester_fenced == true
	not _action in _read_actions
}

# METADATA
# title: A cluster fences at most fences_per_window domains per window
# description: |
#   A storm of fences is more likely a broken cluster than failed nodes. The broker
#   counts the cluster's distinct domains fenced within the window (input.recent_fences).
# custom:
#   rule: 11
#   code: fence_storm_limit
reasons contains _because(rego.metadata.rule(), detail) if {
	not _as_admin
	_action in _fence_actions
	recent := object.get(input, "recent_fences", 0)
	limit := _cluster.limits.fences_per_window
	recent >= limit
	detail := sprintf(
		"cluster %s fenced %d domains in the last %v s (limit %d); %s refused",
		[_req_cluster, recent, _cluster.limits.window, limit, _action],
	)
}

# --- Allow: a permit rule matches and no deny rule fired ----------------------

default allow := false

allow if {
	count(reasons) == 0
	_permitted
}

# A member acting within its own cluster.
_permitted if {
	not _as_admin
	_member
	_action in _known_actions
	_target_or_list_ok
}

# An admin reading.
_permitted if {
	_as_admin
	data.admins[_req_admin]
	_action in _read_actions
}

_target_or_list_ok if _action in _list_actions

_target_or_list_ok if data.domains[_target].cluster == _req_cluster

# --- The entrypoint ----------------------------------------------------------

# METADATA
# title: The decision the broker evaluates
# description: |
#   {allow, reasons: [{code, detail}]}, plus domains (what the requester may
#   see) on an allowed list or gethosts. A deny always carries a reason.
# entrypoint: true
decision := {"allow": allow, "reasons": _decision_reasons, "domains": _visible_domains} if _listing

decision := {"allow": allow, "reasons": _decision_reasons} if not _listing

_listing if {
	allow
	_action in _list_actions
}

_visible_domains := _cluster.domains if not _as_admin

_visible_domains := sort([d | some d, _ in data.domains]) if _as_admin

_decision_reasons := [] if allow

_decision_reasons := sort(reasons) if count(reasons) > 0

# METADATA
# title: Safety net
# description: Nothing permitted the request and no rule said why; still a deny, with a reason.
# custom:
#   rule: "-"
#   code: not_permitted
_decision_reasons := [_because(rego.metadata.rule(), "no rule allows this request")] if {
	not allow
	count(reasons) == 0
}
