# fence-broker's decision: may this requester do this action to this target?
#
# Input (built by the broker; identity comes from the SSH key, never the request):
#   {"requester": {"cluster": "blue", "node": "blue-1"}   a member node, or
#                 {"admin": "ops"},                       an admin key,
#    "action": "off", "target": "blue-2",                 target absent for list/gethosts
#    "requester_fenced": false,                           the fence-race state (local or etcd), see rule 10
#    "recent_fences": 0}                                  domains of the cluster fenced in its storm window, rule 11
# Data (derived from clusters.yaml by the broker, keyed so that every lookup is O(1)):
#   clusters.<c>.nodes.<n>.domain, clusters.<c>.actions.<a> = true,
#   clusters.<c>.allow_self_off, clusters.<c>.domains (sorted list),
#   clusters.<c>.limits.fences_per_window / window (seconds; absent: no limit),
#   domains.<d>.cluster, admins.<a> = {}
#
# Checklist: a request is allowed only when it passes every rule below and
# produces no deny reason. Reasons are "code: detail" strings, scalars only
# (sprintf runs in JS under wasm).
package fencing

default allow := false

known_actions := {"gethosts", "list", "status", "on", "off", "reset"}

list_actions := {"gethosts", "list"}

target_actions := {"status", "on", "off", "reset"}

read_actions := {"gethosts", "list", "status"}

# Scalars for messages; "" where the input lacks them.
req_cluster := object.get(input, ["requester", "cluster"], "")

req_node := object.get(input, ["requester", "node"], "")

req_admin := object.get(input, ["requester", "admin"], "")

action := object.get(input, "action", "")

target := object.get(input, "target", "")

# The requesting member node; undefined unless both cluster and node are known.
member := data.clusters[req_cluster].nodes[req_node]

cluster := data.clusters[req_cluster]

as_admin if req_admin != ""

# --- Rule 1: the requester is a known member node of a known cluster --------
reasons contains sprintf("unknown_cluster: cluster %s is not configured", [req_cluster]) if {
	not as_admin
	not cluster
}

reasons contains sprintf("not_a_member: node %s is not a member of cluster %s", [req_node, req_cluster]) if {
	not as_admin
	cluster
	not member
}

# --- Rule 2: an admin requester is a configured admin -------------------------
reasons contains sprintf("unknown_admin: admin %s is not configured", [req_admin]) if {
	as_admin
	not data.admins[req_admin]
}

# --- Rule 3: the action is one the broker knows ------------------------------
reasons contains sprintf("unknown_action: %s is not an action", [action]) if {
	not known_actions[action]
}

# --- Rule 4: the action is enabled for the requester's cluster ---------------
reasons contains sprintf("action_not_enabled: cluster %s does not enable %s", [req_cluster, action]) if {
	not as_admin
	target_actions[action]
	cluster
	not cluster.actions[action]
}

# --- Rule 5: a target is named exactly when the action takes one -------------
reasons contains sprintf("target_missing: %s needs a target domain", [action]) if {
	target_actions[action]
	target == ""
}

reasons contains sprintf("target_unexpected: %s takes no target", [action]) if {
	list_actions[action]
	target != ""
}

# --- Rule 6: the target exists and belongs to the requester's cluster --------
reasons contains sprintf("target_unknown: domain %s is not owned by any cluster", [target]) if {
	target_actions[action]
	target != ""
	not data.domains[target]
}

reasons contains sprintf("target_not_owned: domain %s belongs to another cluster, not %s", [target, req_cluster]) if {
	not as_admin
	target_actions[action]
	owner := data.domains[target].cluster
	owner != req_cluster
}

# --- Rule 7: a node never turns itself on or resets itself --------------------
reasons contains sprintf("self_fence: node %s may not %s its own domain %s", [req_node, action, target]) if {
	action in {"on", "reset"}
	member.domain == target
}

# --- Rule 8: a node turns itself off only where its cluster allows it --------
reasons contains sprintf("self_off: cluster %s does not allow node %s to power off its own domain", [req_cluster, req_node]) if {
	action == "off"
	member.domain == target
	not cluster.allow_self_off == true
}

# --- Rule 9: admins are read-only --------------------------------------------
reasons contains sprintf("admin_read_only: admin %s may not %s", [req_admin, action]) if {
	as_admin
	known_actions[action]
	not read_actions[action]
}

# --- Rule 10: a node whose own domain is being or was just fenced has lost ---
# (the two-node fence race: exactly one side survives). Only power actions are
# refused: the loser may still read, since Pacemaker monitors its stonith
# device from the rebooted node.
reasons contains sprintf("fence_race_lost: node %s's own domain is being or was just fenced; it may not %s", [req_node, action]) if {
	not as_admin
	input.requester_fenced == true
	not read_actions[action]
}

# --- Rule 11: a cluster fences at most fences_per_window domains per window ---
# (a storm of fences is more likely a broken cluster than failed nodes). The
# broker counts distinct domains of the cluster fenced within the window, in
# the coordination store, and passes the count; a domain fenced again counts once.
reasons contains sprintf("fence_storm_limit: cluster %s fenced %d domains in the last %v s (limit %d); %s refused", [req_cluster, recent, cluster.limits.window, cluster.limits.fences_per_window, action]) if {
	not as_admin
	fence_actions[action]
	recent := object.get(input, "recent_fences", 0)
	recent >= cluster.limits.fences_per_window
}

fence_actions := {"off", "reset"}

# --- Allow: a positive match and no reason against -------------------------
allow if {
	count(reasons) == 0
	permitted
}

# A member acting within its own cluster.
permitted if {
	not as_admin
	member
	known_actions[action]
	target_or_list_ok
}

# An admin reading.
permitted if {
	as_admin
	data.admins[req_admin]
	read_actions[action]
}

target_or_list_ok if list_actions[action]

target_or_list_ok if data.domains[target].cluster == req_cluster

# --- The entrypoint: fencing/decision ---------------------------------------
visible_domains := cluster.domains if not as_admin

visible_domains := sort([d | some d, _ in data.domains]) if as_admin

decision := {"allow": allow, "reasons": decision_reasons, "domains": visible_domains} if listing

decision := {"allow": allow, "reasons": decision_reasons} if {
	not listing
}

listing if {
	allow
	list_actions[action]
}

decision_reasons := [] if allow

decision_reasons := sort(reasons) if count(reasons) > 0

decision_reasons := ["not_permitted: no rule allows this request"] if {
	not allow
	count(reasons) == 0
}
